//! The `[models.NAME]` tables: path (a file, a folder or an hf: cache entry), device, price, chat template and
//! KV cache element.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::WorkspaceError;
use super::error::Locator;
use super::load::resolve;
use super::model::{KvCacheType, ModelSpec};
use super::raw::RawModel;

pub(super) fn build(
    root: &Path,
    loc: &Locator<'_>,
    raw: BTreeMap<String, Spanned<RawModel>>,
) -> Result<BTreeMap<String, ModelSpec>, WorkspaceError> {
    let mut out = BTreeMap::new();
    for (name, sp) in raw {
        let m = sp.into_inner();
        let device = match m.device {
            None => "auto".to_string(),
            Some(d) => {
                if !valid_device(d.get_ref()) {
                    return Err(loc.at(
                        d.span().start,
                        format!("models.{name}.device"),
                        format!("unknown device `{}` (expected auto, cpu, cuda:N or metal)", d.get_ref()),
                    ));
                }
                d.into_inner()
            }
        };
        let gpu_hour_usd = match m.gpu_hour_usd {
            Some(v) if !(v.get_ref().is_finite() && *v.get_ref() >= 0.0) => {
                return Err(loc.at(v.span().start, format!("models.{name}.gpu_hour_usd"), "must be a number ≥ 0"));
            }
            v => v.map(Spanned::into_inner),
        };
        let path_at = m.path.span().start;
        let path_raw = m.path.into_inner();
        // `hf:org/name[/file]` names a Hugging Face cache entry, not a file beside the workspace: joined to
        // the root it would never be recognised (the engine resolves it when the model is loaded).
        let path = match path_raw.strip_prefix("hf:") {
            Some(repo) => {
                let parts: Vec<&str> = repo.splitn(3, '/').collect();
                if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
                    let msg = format!("`{path_raw}`: expected hf:org/name or hf:org/name/file");
                    return Err(loc.at(path_at, format!("models.{name}.path"), msg));
                }
                PathBuf::from(&path_raw)
            }
            None => resolve(root, &path_raw),
        };
        let chat_template = match m.chat_template {
            None => None,
            Some(t) => Some(chat_template(root, loc, &name, t)?),
        };
        let kv_cache = match m.kv_cache {
            None => KvCacheType::default(),
            Some(k) => KvCacheType::parse(k.get_ref()).ok_or_else(|| {
                let msg = format!("unknown KV cache element `{}` (expected f32 or f16)", k.get_ref());
                loc.at(k.span().start, format!("models.{name}.kv_cache"), msg)
            })?,
        };
        out.insert(name.clone(), ModelSpec { name, path_raw, path, device, gpu_hour_usd, chat_template, kv_cache });
    }
    Ok(out)
}

/// A `chat_template` value: Jinja written inline (it holds `{{` or `{%`), else a file beside the workspace.
/// Checked here for syntax, so a typo is reported at its key rather than at the first run.
fn chat_template(root: &Path, loc: &Locator<'_>, name: &str, t: Spanned<String>) -> Result<String, WorkspaceError> {
    let (at, key) = (t.span().start, format!("models.{name}.chat_template"));
    let value = t.into_inner();
    let (text, origin) = if value.contains("{{") || value.contains("{%") {
        (value, "the inline template".to_string())
    } else {
        let path = resolve(root, &value);
        let text = super::store::read_text(&path)
            .map_err(|e| loc.at(at, key.clone(), format!("cannot read {}: {e}", path.display())))?;
        (text, path.display().to_string())
    };
    if text.trim().is_empty() {
        return Err(loc.at(at, key, format!("{origin} is empty")));
    }
    if let Err(e) = minijinja::Environment::new().template_from_str(&text) {
        let line = e.line().map(|l| format!(", line {l}")).unwrap_or_default();
        return Err(loc.at(
            at,
            key,
            format!("{origin}{line}: not a Jinja template: {}", e.detail().unwrap_or("syntax error")),
        ));
    }
    Ok(text)
}

pub fn valid_device(d: &str) -> bool {
    matches!(d, "auto" | "cpu" | "metal")
        || d.strip_prefix("cuda:").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}
