//! The hosted job in progress, kept in the workspace (`finetune-job.json`) after every step that costs
//! something — each upload, the job's creation — so a restart follows the same job and never uploads twice;
//! a finished job's record moves to `finetune-history.jsonl`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workspace::store::write_atomic;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub provider: String,
    pub base_url: String,
    /// The base model being fine-tuned.
    pub model: String,
    pub suffix: Option<String>,
    /// The lane whose endpoint and key variable the job uses (never the key itself).
    pub lane: String,
    pub api_key_env: String,
    /// sha256 of the files uploaded: a resume with a changed dataset says so.
    pub dataset_sha256: String,
    pub training_file: Option<String>,
    pub validation_file: Option<String>,
    pub job_id: Option<String>,
    /// The last status read.
    pub status: Option<String>,
    pub started_at: String,
    /// Fireworks: the account the resources live under, and the deployment the LoRA is loaded onto.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Set when the job ends: the fine-tuned model id (success) or why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

pub fn path(root: &Path) -> PathBuf {
    root.join("finetune-job.json")
}

pub fn history(root: &Path) -> PathBuf {
    root.join("finetune-history.jsonl")
}

/// The job in progress, if any; an unreadable file is an error naming it (never silently a new upload).
pub fn load(root: &Path) -> Result<Option<State>, String> {
    let p = path(root);
    match std::fs::read_to_string(&p) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| format!("{}: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

pub fn save(root: &Path, s: &State) -> Result<(), String> {
    let p = path(root);
    let text = serde_json::to_string_pretty(s).map_err(|e| e.to_string())?;
    write_atomic(&p, text.as_bytes()).map_err(|e| format!("{}: {e}", p.display()))
}

/// Appends the finished job to the history (fsync'd) and removes the in-progress file.
pub fn finish(root: &Path, s: &State) -> Result<(), String> {
    let h = history(root);
    let line = serde_json::to_string(s).map_err(|e| e.to_string())?;
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(&h).map_err(|e| format!("{}: {e}", h.display()))?;
    writeln!(f, "{line}").and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", h.display()))?;
    let p = path(root);
    std::fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))
}
