//! Answers cached by (lane configuration hash, case hash) in eval-cache.jsonl, so a rerun runs only what changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::engine::{Timings, Usage};
use crate::metrics::history::{Provenance, sha256_hex};
use crate::metrics::{prices, run_cost_nanos};
use crate::workspace::{LaneSpec, Workspace, store};

/// The cache file in a workspace.
pub const CACHE_FILE: &str = "eval-cache.jsonl";

/// One lane's answer to one case, with the figures the scoreboard needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub lane_hash: String,
    pub case_hash: String,
    pub lane: String,
    pub case_id: String,
    pub output: String,
    /// Why the run failed (its partial output is kept); failed answers are never cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub cached_prompt_tokens: Option<u64>,
    /// Prompt tokens written into the provider's cache (Anthropic), priced apart.
    #[serde(default)]
    pub cache_write_tokens: Option<u64>,
    pub ttft_ms: Option<f64>,
    pub total_ms: Option<f64>,
    /// Compute time of a local run, for lanes priced by the machine hour.
    #[serde(default)]
    pub busy_ms: Option<f64>,
    /// The most lanes that shared the run's device while it ran (local runs; see `Timings::shared_lanes`):
    /// above 1, `ttft_ms` and `total_ms` include the other lanes' turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_lanes: Option<u32>,
    #[serde(default)]
    pub estimated: bool,
    pub time_unix_ms: u128,
    /// Read from the cache rather than run now (not stored).
    #[serde(skip)]
    pub from_cache: bool,
    /// The judge's verdicts on this answer, by judge id (not stored here: judge-cache.jsonl keeps the replies).
    #[serde(skip)]
    pub verdicts: HashMap<String, super::judge::Verdict>,
}

impl Answer {
    /// An answer with no figures yet: what a run produced for a case, stamped now.
    pub fn new(lane_hash: String, case_hash: String, lane: String, case_id: String, output: String) -> Self {
        Self {
            lane_hash,
            case_hash,
            lane,
            case_id,
            output,
            error: None,
            prompt_tokens: None,
            completion_tokens: None,
            cached_prompt_tokens: None,
            cache_write_tokens: None,
            ttft_ms: None,
            total_ms: None,
            busy_ms: None,
            shared_lanes: None,
            estimated: false,
            time_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            from_cache: false,
            verdicts: HashMap::new(),
        }
    }

    /// The run's cost at the lane's current price (prices are not part of the lane hash: repricing re-scores).
    pub fn cost_usd(&self, ws: &Workspace, lane: &LaneSpec) -> Option<f64> {
        self.error.as_ref().map_or(Some(()), |_| None)?;
        let usage = Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_prompt_tokens: self.cached_prompt_tokens,
            cache_write_tokens: self.cache_write_tokens,
            ..Usage::default()
        };
        let ms = |v: f64| std::time::Duration::from_secs_f64(v.max(0.0) / 1000.0);
        let timings = Timings {
            ttft: self.ttft_ms.map(ms),
            total: ms(self.total_ms.unwrap_or(0.0)),
            busy: self.busy_ms.map(ms),
            shared_lanes: self.shared_lanes,
        };
        run_cost_nanos(prices::rate(ws, lane), &usage, &timings).map(crate::metrics::nanos_to_usd)
    }
}

/// Everything that changes what a lane answers: backend, model (file identity for local models), adapter
/// contents, system prompt text, sampling and output format. The lane's id and its prices are left out.
pub fn lane_hash(ws: &Workspace, lane: &LaneSpec) -> String {
    let system = ws.prompt_text(&lane.prompt).unwrap_or_default();
    let provenance = Provenance::of(ws, system, lane.adapter.as_deref());
    let model = match ws.models.get(&lane.model).filter(|_| !lane.backend.is_api()) {
        Some(m) => crate::engine::local::paths::resolve(&m.path)
            .ok()
            .and_then(|p| fingerprint(&p))
            .unwrap_or_else(|| m.path_raw.clone()),
        None => lane.model.clone(),
    };
    let s = &lane.sampling;
    let key = format!(
        "v1|{}|{}|{}|{:?}|{}|{:?}|{}|{}|{}|{:?}|{}|{:?}|{:?}|{:?}",
        lane.backend.as_str(),
        model,
        lane.base_url.as_deref().unwrap_or_default(),
        provenance.adapter_sha256.or_else(|| lane.adapter.clone()),
        provenance.prompt_sha256,
        s.max_tokens,
        s.temperature,
        s.top_p,
        s.repetition_penalty,
        s.top_k,
        s.seed.map(|v| v.to_string()).unwrap_or_default(),
        s.stop,
        lane.api.response_format,
        ws.models.get(&lane.model).map(|m| m.device.clone()),
    );
    sha256_hex(key.as_bytes())[..16].to_string()
}

/// What identifies a local model's contents without reading gigabytes: each weight, config and tokenizer
/// file's size and the hash of its first and last MiB (a changed file changes its header, its tail or its size).
/// Not its path or modification time, so a fresh checkout or a copied workspace keeps its cache.
fn fingerprint(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const EDGE: u64 = 1 << 20;
    let mut files: Vec<PathBuf> = if path.is_dir() {
        let wanted = |p: &Path| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.ends_with(".safetensors") || name.ends_with(".gguf") || name.ends_with(".json")
        };
        std::fs::read_dir(path).ok()?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| wanted(p)).collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    let mut h = sha2::Sha256::new();
    for f in &files {
        let mut file = std::fs::File::open(f).ok()?;
        let len = file.metadata().ok()?.len();
        h.update(len.to_le_bytes());
        let mut buf = Vec::new();
        (&mut file).take(EDGE).read_to_end(&mut buf).ok()?;
        if len > 2 * EDGE {
            file.seek(SeekFrom::Start(len - EDGE)).ok()?;
            file.take(EDGE).read_to_end(&mut buf).ok()?;
        } else {
            file.read_to_end(&mut buf).ok()?;
        }
        h.update(&buf);
    }
    Some(crate::metrics::history::hex(&h.finalize()))
}

/// The cache as read: the newest answer per key.
#[derive(Debug, Default)]
pub struct Cache {
    pub path: PathBuf,
    answers: HashMap<(String, String), Answer>,
    /// Lines that were not answers (a torn write, a hand edit): skipped, counted.
    pub skipped: usize,
}

impl Cache {
    pub fn load(ws_root: &Path) -> Result<Self, super::EvalError> {
        let path = ws_root.join(CACHE_FILE);
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(super::EvalError::Io { path, source: e }),
        };
        let mut cache = Self { path, ..Self::default() };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Answer>(line) {
                Ok(mut a) if a.error.is_none() => {
                    a.from_cache = true;
                    cache.answers.insert((a.lane_hash.clone(), a.case_hash.clone()), a);
                }
                _ => cache.skipped += 1,
            }
        }
        Ok(cache)
    }

    pub fn get(&self, lane_hash: &str, case_hash: &str) -> Option<&Answer> {
        self.answers.get(&(lane_hash.to_string(), case_hash.to_string()))
    }

    /// Appends (fsync'd) and remembers a successful answer; a failed one is only remembered nowhere.
    pub fn put(&mut self, answer: &Answer) -> Result<(), String> {
        if answer.error.is_some() {
            return Ok(());
        }
        let line = serde_json::to_string(answer).map_err(|e| e.to_string())?;
        store::append_line(&self.path, &line).map_err(|e| e.to_string())?;
        let mut a = answer.clone();
        a.from_cache = true;
        self.answers.insert((a.lane_hash.clone(), a.case_hash.clone()), a);
        Ok(())
    }
}
