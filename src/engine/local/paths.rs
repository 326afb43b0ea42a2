//! Where a model lives: a GGUF file, a safetensors folder, or a Hugging Face cache entry (read offline).

use std::path::{Path, PathBuf};

use super::{LocalError, Result};

/// Resolves a `[models]` path: `hf:org/name[/file]` and `models--org--name` cache folders become the
/// snapshot on disk; nothing is downloaded here.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    let s = path.to_string_lossy();
    if let Some(repo) = s.strip_prefix("hf:") {
        return hf_cache(repo);
    }
    if path.is_dir() && path.join("snapshots").is_dir() {
        return snapshot(path);
    }
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let hint = if path.file_name().is_some_and(|n| n == "SmolLM2-135M-Instruct.Q4_1.gguf") {
        " (run scripts/fetch-model to fetch the default model)"
    } else {
        ""
    };
    Err(LocalError::Model(format!("model not found: {}{hint}", path.display())))
}

/// `org/name` or `org/name/file.gguf` in the local Hugging Face cache.
fn hf_cache(repo: &str) -> Result<PathBuf> {
    let parts: Vec<&str> = repo.splitn(3, '/').collect();
    let [org, name, rest @ ..] = parts.as_slice() else {
        return Err(LocalError::Model(format!("`hf:{repo}`: expected hf:org/name or hf:org/name/file")));
    };
    let hub = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| dirs::cache_dir().map(|c| c.join("huggingface/hub")))
        .ok_or_else(|| LocalError::Model("no cache folder for Hugging Face models".into()))?;
    let dir = hub.join(format!("models--{org}--{name}"));
    if !dir.is_dir() {
        return Err(LocalError::Model(format!(
            "`hf:{repo}` is not in the Hugging Face cache ({}); download it first",
            dir.display()
        )));
    }
    let snap = snapshot(&dir)?;
    Ok(match rest.first() {
        Some(file) => snap.join(file),
        None => snap,
    })
}

/// The snapshot `refs/main` points at, else the only snapshot.
fn snapshot(dir: &Path) -> Result<PathBuf> {
    if let Ok(rev) = std::fs::read_to_string(dir.join("refs/main")) {
        let p = dir.join("snapshots").join(rev.trim());
        if p.is_dir() {
            return Ok(p);
        }
    }
    let snaps: Vec<PathBuf> = std::fs::read_dir(dir.join("snapshots"))
        .map_err(|source| LocalError::Io { path: dir.join("snapshots"), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    match snaps.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(LocalError::Model(format!("{}: no snapshot in the cache folder", dir.display()))),
        _ => Err(LocalError::Model(format!("{}: several snapshots and no refs/main; name one", dir.display()))),
    }
}
