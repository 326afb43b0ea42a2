//! The judge's well-formed replies in judge-cache.jsonl, keyed by (judge lane configuration, prompt), so a
//! rerun of the eval pays for no verdict twice; a malformed reply is never kept (the next eval asks again).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Ask;
use crate::engine::{Timings, Usage};
use crate::metrics::history::sha256_hex;
use crate::metrics::{prices, run_cost_nanos};
use crate::workspace::{LaneSpec, Workspace, store};

pub const JUDGE_CACHE_FILE: &str = "judge-cache.jsonl";

/// One judge reply with its token counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub key: String,
    pub judge_lane: String,
    pub text: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub cached_prompt_tokens: Option<u64>,
    pub time_unix_ms: u128,
}

impl Reply {
    /// The call's cost at the judge lane's current price.
    pub fn cost_usd(&self, ws: &Workspace, lane: &LaneSpec) -> Option<f64> {
        let usage = Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_prompt_tokens: self.cached_prompt_tokens,
            ..Usage::default()
        };
        run_cost_nanos(prices::rate(ws, lane), &usage, &Timings::default()).map(crate::metrics::nanos_to_usd)
    }
}

/// The key of an ask to the judge lane whose eval-cache hash is `lane_hash`.
pub fn key(lane_hash: &str, ask: &Ask) -> String {
    sha256_hex(format!("judge v1|{lane_hash}|{}|{}", ask.system, ask.input).as_bytes())[..24].to_string()
}

#[derive(Debug, Default)]
pub struct JudgeCache {
    pub path: PathBuf,
    replies: HashMap<String, Reply>,
}

impl JudgeCache {
    pub fn load(root: &Path) -> Result<Self, String> {
        let path = root.join(JUDGE_CACHE_FILE);
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let replies =
            text.lines().filter_map(|l| serde_json::from_str::<Reply>(l).ok()).map(|r| (r.key.clone(), r)).collect();
        Ok(Self { path, replies })
    }

    pub fn get(&self, lane_hash: &str, ask: &Ask) -> Option<&Reply> {
        self.replies.get(&key(lane_hash, ask))
    }

    /// Appends (fsync'd) and remembers a well-formed reply.
    pub fn put(&mut self, reply: Reply) -> Result<(), String> {
        let line = serde_json::to_string(&reply).map_err(|e| e.to_string())?;
        store::append_line(&self.path, &line).map_err(|e| e.to_string())?;
        self.replies.insert(reply.key.clone(), reply);
        Ok(())
    }
}
