//! Lane keys that depend on the backend: what API lanes take, what each API can honour, located errors.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::WorkspaceError;
use super::error::Locator;
use super::model::{ApiOptions, BackendKind, ResponseFormat, url_host};
use super::raw::RawLane;

/// The most retries a lane may ask for; more only hammers a struggling server.
pub const MAX_RETRIES: u32 = 10;
/// The most requests an eval keeps in flight on one lane.
pub const MAX_CONCURRENCY: u32 = 64;
const MAX_TIMEOUT_S: f64 = 3600.0;
/// Default first-byte and idle timeouts of OpenAI's reasoning models.
pub const REASONING_TIMEOUT: Duration = Duration::from_secs(600);

/// Refuses keys a lane's backend cannot honour (never silently ignored) and builds the API options.
pub fn build(
    loc: &Locator<'_>,
    i: usize,
    r: &RawLane,
    backend: BackendKind,
    root: &Path,
) -> Result<ApiOptions, WorkspaceError> {
    let key = |k: &str| format!("lanes[{i}].{k}");
    let err = |at: usize, k: &str, msg: &str| Err(loc.at(at, key(k), msg));
    if backend == BackendKind::Local {
        let api_only: [(&str, Option<usize>); 9] = [
            ("base_url", r.base_url.as_ref().map(|v| v.span().start)),
            ("api_key_env", r.api_key_env.as_ref().map(|v| v.span().start)),
            ("connect_timeout_s", r.connect_timeout_s.as_ref().map(|v| v.span().start)),
            ("first_byte_timeout_s", r.first_byte_timeout_s.as_ref().map(|v| v.span().start)),
            ("idle_timeout_s", r.idle_timeout_s.as_ref().map(|v| v.span().start)),
            ("max_retries", r.max_retries.as_ref().map(|v| v.span().start)),
            ("concurrency", r.concurrency.as_ref().map(|v| v.span().start)),
            ("response_format", r.response_format.as_ref().map(|v| v.span().start)),
            ("json_schema", r.json_schema.as_ref().map(|v| v.span().start)),
        ];
        if let Some((field, Some(at))) = api_only.into_iter().find(|(_, at)| at.is_some()) {
            return err(at, field, "only API lanes (openai, anthropic) take this key");
        }
        return Ok(ApiOptions::default());
    }
    if let Some(p) = &r.repetition_penalty {
        return err(p.span().start, "repetition_penalty", "hosted APIs take no repetition_penalty (local lanes only)");
    }
    if let Some(u) = &r.base_url
        && !(u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://"))
    {
        return err(u.span().start, "base_url", "must start with http:// or https://");
    }
    if let Some(v) = &r.api_key_env {
        let name = v.get_ref();
        let valid = name.is_empty()
            || (!name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !valid {
            // The value is not echoed: a key pasted here by mistake must not reach a log or a screen.
            return err(
                v.span().start,
                "api_key_env",
                "names the environment variable holding the key (letters, digits, _; \"\" for none); \
                 if a key was pasted here, remove it from the file",
            );
        }
    }
    let own_host = r.base_url.as_ref().is_none_or(|u| {
        let default = backend.default_base_url().unwrap_or_default();
        url_host(u.get_ref()).eq_ignore_ascii_case(url_host(default))
    });
    if let (Some(u), None, false) = (&r.base_url, &r.api_key_env, own_host) {
        // The provider's default variable is never sent to another host unasked.
        return err(
            u.span().start,
            "base_url",
            &format!(
                "a lane pointed at {} names its key's variable: add api_key_env = \"NAME\" (\"\" for none); \
                 {} goes only to {}",
                url_host(u.get_ref()),
                backend.default_key_env().unwrap_or_default(),
                url_host(backend.default_base_url().unwrap_or_default())
            ),
        );
    }
    match backend {
        BackendKind::OpenAi => {
            if let Some(k) = &r.top_k {
                return err(k.span().start, "top_k", "the OpenAI Chat Completions API has no top_k");
            }
            if let Some(s) = &r.stop
                && s.get_ref().len() > 4
            {
                return err(s.span().start, "stop", "OpenAI-compatible servers take at most 4 stop sequences");
            }
        }
        BackendKind::Anthropic => {
            if let Some(s) = &r.seed {
                return err(s.span().start, "seed", "the Anthropic Messages API has no seed");
            }
            if let Some(t) = &r.temperature
                && *t.get_ref() > 1.0
            {
                return err(t.span().start, "temperature", "Anthropic takes a temperature between 0 and 1");
            }
        }
        BackendKind::Local => unreachable!("local lanes returned above"),
    }
    let mut api = ApiOptions::default();
    if backend == BackendKind::OpenAi && crate::engine::api::openai::is_reasoning_model(r.model.get_ref()) {
        // A reasoning model may think for minutes before its first byte or between chunks.
        api.first_byte_timeout = REASONING_TIMEOUT;
        api.idle_timeout = REASONING_TIMEOUT;
    }
    for (field, value, slot) in [
        ("connect_timeout_s", &r.connect_timeout_s, &mut api.connect_timeout),
        ("first_byte_timeout_s", &r.first_byte_timeout_s, &mut api.first_byte_timeout),
        ("idle_timeout_s", &r.idle_timeout_s, &mut api.idle_timeout),
    ] {
        if let Some(v) = value {
            let s = *v.get_ref();
            if !(s.is_finite() && s > 0.0 && s <= MAX_TIMEOUT_S) {
                return err(v.span().start, field, "must be seconds in (0, 3600]");
            }
            *slot = Duration::from_secs_f64(s);
        }
    }
    if let Some(m) = &r.max_retries {
        if *m.get_ref() > MAX_RETRIES {
            return err(m.span().start, "max_retries", &format!("must be at most {MAX_RETRIES}"));
        }
        api.max_retries = *m.get_ref();
    }
    if let Some(c) = &r.concurrency {
        if !(1..=MAX_CONCURRENCY).contains(c.get_ref()) {
            return err(c.span().start, "concurrency", &format!("must be 1 to {MAX_CONCURRENCY}"));
        }
        api.concurrency = Some(*c.get_ref());
    }
    api.response_format = response_format(loc, i, r, backend, root)?;
    Ok(api)
}

fn response_format(
    loc: &Locator<'_>,
    i: usize,
    r: &RawLane,
    backend: BackendKind,
    root: &Path,
) -> Result<ResponseFormat, WorkspaceError> {
    let key = |k: &str| format!("lanes[{i}].{k}");
    let named = r.response_format.as_ref().map(|f| (f.get_ref().as_str(), f.span().start));
    if let Some((name, at)) = named
        && !ResponseFormat::NAMES.contains(&name)
    {
        return Err(loc.at(
            at,
            key("response_format"),
            format!("unknown response_format `{name}` (expected text, json_object or json_schema)"),
        ));
    }
    if backend == BackendKind::Anthropic {
        let refused = match (named, &r.json_schema) {
            (Some((name, at)), _) if name != "text" => Some(("response_format", at)),
            (_, Some(s)) => Some(("json_schema", s.span().start)),
            _ => None,
        };
        if let Some((field, at)) = refused {
            return Err(loc.at(
                at,
                key(field),
                "the Anthropic Messages API has no response_format; describe the JSON in the prompt",
            ));
        }
        return Ok(ResponseFormat::Text);
    }
    match (named, &r.json_schema) {
        (None | Some(("json_schema", _)), Some(file)) => schema(loc, &key("json_schema"), file, root),
        (Some(("json_schema", at)), None) => {
            Err(loc.at(at, key("response_format"), "json_schema needs `json_schema = \"file.json\"` beside it"))
        }
        (Some(_), Some(file)) => Err(loc.at(
            file.span().start,
            key("json_schema"),
            "a schema file goes with response_format = \"json_schema\"",
        )),
        (Some(("json_object", _)), None) => Ok(ResponseFormat::JsonObject),
        _ => Ok(ResponseFormat::Text),
    }
}

/// Reads a schema file: a bare JSON Schema, or OpenAI's `{"name", "schema", "strict"}` wrapper.
fn schema(loc: &Locator<'_>, key: &str, file: &Spanned<String>, root: &Path) -> Result<ResponseFormat, WorkspaceError> {
    let at = file.span().start;
    let path = root.join(file.get_ref());
    let text =
        super::store::read_text(&path).map_err(|e| loc.at(at, key, format!("cannot read {}: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| loc.at(at, key, format!("{}:{}:{}: not JSON: {e}", path.display(), e.line(), e.column())))?;
    let Some(obj) = value.as_object() else {
        return Err(loc.at(at, key, format!("{}: a JSON Schema is an object", path.display())));
    };
    let wrapped = obj.get("schema").is_some_and(serde_json::Value::is_object) && obj.get("name").is_some();
    let json_schema = if wrapped {
        value
    } else {
        let stem = Path::new(file.get_ref()).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        // OpenAI requires a name of letters, digits, _ and - (at most 64).
        let name: String =
            stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(64).collect();
        serde_json::json!({ "name": if name.is_empty() { "answer".into() } else { name }, "schema": value, "strict": true })
    };
    Ok(ResponseFormat::JsonSchema { file: file.get_ref().clone(), json_schema })
}
