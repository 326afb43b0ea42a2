//! Downloading a model into the Hugging Face cache: only when the user runs `tunebench pull`.

use std::path::PathBuf;

use hf_hub::api::sync::ApiBuilder;

use super::{LocalError, Result};

/// The files a safetensors model folder needs besides its weights.
const FOLDER_FILES: [&str; 4] = ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"];

/// Fetches `org/name/file` (one file, e.g. a GGUF) or `org/name` (a safetensors folder) and returns
/// the path on disk; workspaces then name it `hf:org/name[/file]` and load it offline.
pub fn pull(spec: &str) -> Result<PathBuf> {
    let repo_spec = spec.strip_prefix("hf:").unwrap_or(spec);
    let parts: Vec<&str> = repo_spec.splitn(3, '/').collect();
    let [org, name, rest @ ..] = parts.as_slice() else {
        return Err(LocalError::Model(format!("`{spec}`: expected hf:org/name or hf:org/name/file")));
    };
    let api =
        ApiBuilder::from_env().with_progress(true).build().map_err(|e| LocalError::Model(format!("hf-hub: {e}")))?;
    let repo = api.model(format!("{org}/{name}"));
    let get =
        |file: &str| repo.get(file).map_err(|e| LocalError::Model(format!("downloading {org}/{name}/{file}: {e}")));
    if let Some(file) = rest.first() {
        return get(file);
    }
    let info = repo.info().map_err(|e| LocalError::Model(format!("listing {org}/{name}: {e}")))?;
    let names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let mut last = None;
    for f in names.iter().filter(|n| n.ends_with(".safetensors") || FOLDER_FILES.contains(&n.as_str())) {
        last = Some(get(f)?);
    }
    last.and_then(|p| p.parent().map(PathBuf::from)).ok_or_else(|| {
        LocalError::Model(format!("{org}/{name} has no safetensors weights; name a file (hf:{org}/{name}/FILE.gguf)"))
    })
}
