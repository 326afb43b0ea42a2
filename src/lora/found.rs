//! The adapters a workspace holds, as a lane's `adapter` names them: every folder under `adapters/` with an
//! `adapter_config.json`, and those one level down (a sweep's points, `adapters/NAME-sweep/n100-…`).

use std::path::Path;

/// Sorted `adapters/NAME` (and `adapters/NAME/POINT`) of `root`; no adapters folder is an empty list, not an
/// error. Folders without an adapter (a sweep's own folder, a run that has only checkpoints) are left out.
pub fn adapters(root: &Path) -> Result<Vec<String>, String> {
    let dir = root.join("adapters");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let is_adapter = |p: &Path| p.join("adapter_config.json").is_file();
    let mut names = Vec::new();
    for e in entries.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
        let name = e.file_name().to_string_lossy().to_string();
        if is_adapter(&e.path()) {
            names.push(format!("adapters/{name}"));
            continue;
        }
        let Ok(inner) = std::fs::read_dir(e.path()) else { continue };
        for i in inner.filter_map(Result::ok).filter(|i| is_adapter(&i.path())) {
            names.push(format!("adapters/{name}/{}", i.file_name().to_string_lossy()));
        }
    }
    names.sort_by_key(|n| natural(n));
    Ok(names)
}

/// Sorts digit runs by value, so a sweep's `n50-…` comes before `n100-…`.
pub(crate) fn natural(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let (mut text, mut digits) = (String::new(), String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push((std::mem::take(&mut text), digits.parse().unwrap_or(u64::MAX)));
                digits.clear();
            }
            text.push(c);
        }
    }
    out.push((text, digits.parse().unwrap_or(0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_adapters_and_sweep_points_not_bare_folders() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(adapters(tmp.path()).unwrap(), Vec::<String>::new());
        let make = |rel: &str, adapter: bool| {
            let d = tmp.path().join("adapters").join(rel);
            std::fs::create_dir_all(d.join("checkpoints")).unwrap();
            if adapter {
                std::fs::write(d.join("adapter_config.json"), "{}").unwrap();
            }
        };
        make("ticket-lora", true);
        make("ticket-lora-v2", true);
        make("ticket-lora-sweep/n50-r16-e3-lr0.0005", true);
        make("ticket-lora-sweep/n100-r16-e3-lr0.0005", false);
        make("ticket-lora-sweep/n400-r16-e3-lr0.0005", true);
        make("half-trained", false);
        assert_eq!(
            adapters(tmp.path()).unwrap(),
            [
                "adapters/ticket-lora",
                "adapters/ticket-lora-sweep/n50-r16-e3-lr0.0005",
                "adapters/ticket-lora-sweep/n400-r16-e3-lr0.0005",
                "adapters/ticket-lora-v2",
            ]
        );
    }
}
