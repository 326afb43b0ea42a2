//! Reading workspace.toml: syntax, types and every cross-reference checked, errors located.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::WorkspaceError;
use super::error::Locator;
use super::model::*;
use super::raw::*;

pub const WORKSPACE_FILE: &str = "workspace.toml";

/// Loads a workspace from its folder (or from a path to its workspace.toml).
pub fn load(path: &Path) -> Result<Workspace, WorkspaceError> {
    let (root, file) = if path.is_dir() {
        (path.to_path_buf(), path.join(WORKSPACE_FILE))
    } else {
        let root = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        (root, path.to_path_buf())
    };
    let src = super::store::read_text(&file).map_err(|e| WorkspaceError::io(&file, e))?;
    let mut ws = parse(&root, &file, &src)?;
    ws.on_disk = Some(src);
    Ok(ws)
}

/// Parses workspace text; `root` resolves relative paths, `file` names errors.
pub fn parse(root: &Path, file: &Path, src: &str) -> Result<Workspace, WorkspaceError> {
    let loc = Locator { file, src };
    let doc: toml_edit::DocumentMut = src.parse().map_err(|e: toml_edit::TomlError| {
        let at = e.span().map_or(0, |s| s.start);
        loc.at(at, "(syntax)", e.message().trim())
    })?;
    let de = toml::Deserializer::new(src);
    let raw: RawWorkspace = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = clean_path(&e.path().to_string());
        let inner = e.into_inner();
        let at = inner.span().map_or(0, |s| s.start);
        loc.at(at, key, inner.message().trim())
    })?;
    build(root, file, &loc, raw, doc)
}

/// serde_path_to_error reports toml's private span wrappers as path segments; users never wrote them.
fn clean_path(path: &str) -> String {
    let cleaned: Vec<&str> = path.split('.').filter(|seg| !seg.starts_with("$__")).collect();
    let s = cleaned.join(".");
    if s.is_empty() || s == "?" || s == "." { "(root)".into() } else { s }
}

fn build(
    root: &Path,
    file: &Path,
    loc: &Locator<'_>,
    raw: RawWorkspace,
    doc: toml_edit::DocumentMut,
) -> Result<Workspace, WorkspaceError> {
    let name = raw.name.into_inner();
    let prompts = build_prompts(root, loc, raw.prompts)?;
    let models = super::models::build(root, loc, raw.models)?;
    let pricing = build_pricing(loc, raw.pricing)?;
    if raw.lanes.is_empty() {
        return Err(loc.at(0, "lanes", "a workspace needs at least one [[lanes]] table"));
    }
    let mut lanes = Vec::with_capacity(raw.lanes.len());
    let mut seen = BTreeSet::new();
    for (i, lane) in raw.lanes.into_iter().enumerate() {
        let id_at = lane.get_ref().id.span().start;
        let lane = build_lane(root, loc, i, lane, &prompts, &models)?;
        if !seen.insert(lane.id.clone()) {
            return Err(loc.at(id_at, format!("lanes[{i}].id"), format!("duplicate lane id `{}`", lane.id)));
        }
        lanes.push(lane);
    }
    let savings = build_savings(loc, raw.savings, &lanes)?;
    let dataset = build_dataset(loc, raw.dataset, &lanes, &prompts)?;
    Ok(Workspace {
        root: root.to_path_buf(),
        file: file.to_path_buf(),
        name,
        theme_line: raw.theme.as_ref().map_or(1, |t| super::line_col(loc.src, t.span().start).0),
        theme: raw.theme.map(Spanned::into_inner),
        prompts,
        models,
        lanes,
        pricing,
        savings,
        dataset,
        doc,
        dirty_prompt_files: BTreeSet::new(),
        dirty: false,
        on_disk: None,
    })
}

fn build_prompts(
    root: &Path,
    loc: &Locator<'_>,
    raw: BTreeMap<String, Spanned<RawPrompt>>,
) -> Result<BTreeMap<String, PromptVariant>, WorkspaceError> {
    let mut out = BTreeMap::new();
    for (name, sp) in raw {
        let at = sp.span().start;
        let key = format!("prompts.{name}");
        let p = sp.into_inner();
        let (source, text) = match (p.file, p.text) {
            (Some(_), Some(_)) => {
                return Err(loc.at(at, key, "give either `file` or `text`, not both"));
            }
            (None, None) => return Err(loc.at(at, key, "a prompt variant needs `file` or `text`")),
            (None, Some(text)) => (PromptSource::Inline, text),
            (Some(f), None) => {
                let path = resolve(root, f.get_ref());
                let text = super::store::read_text(&path).map_err(|e| {
                    loc.at(f.span().start, format!("{key}.file"), format!("cannot read {}: {e}", path.display()))
                })?;
                (PromptSource::File(f.into_inner()), text)
            }
        };
        out.insert(name.clone(), PromptVariant { name, source, text });
    }
    Ok(out)
}

fn build_pricing(
    loc: &Locator<'_>,
    raw: BTreeMap<String, Spanned<RawPrice>>,
) -> Result<BTreeMap<String, Price>, WorkspaceError> {
    let mut out = BTreeMap::new();
    for (model, sp) in raw {
        let p = sp.into_inner();
        let check = |v: &Spanned<f64>, field: &str| {
            let x = *v.get_ref();
            if x.is_finite() && x >= 0.0 {
                Ok(x)
            } else {
                Err(loc.at(v.span().start, format!("pricing.\"{model}\".{field}"), "must be a number ≥ 0"))
            }
        };
        let price = Price {
            input_per_mtok: check(&p.input_per_mtok, "input_per_mtok")?,
            output_per_mtok: check(&p.output_per_mtok, "output_per_mtok")?,
            cached_input_per_mtok: p
                .cached_input_per_mtok
                .as_ref()
                .map(|v| check(v, "cached_input_per_mtok"))
                .transpose()?,
            cache_write_per_mtok: p
                .cache_write_per_mtok
                .as_ref()
                .map(|v| check(v, "cache_write_per_mtok"))
                .transpose()?,
        };
        out.insert(model, price);
    }
    Ok(out)
}

fn build_lane(
    root: &Path,
    loc: &Locator<'_>,
    i: usize,
    sp: Spanned<RawLane>,
    prompts: &BTreeMap<String, PromptVariant>,
    models: &BTreeMap<String, ModelSpec>,
) -> Result<LaneSpec, WorkspaceError> {
    let r = sp.into_inner();
    let key = |k: &str| format!("lanes[{i}].{k}");
    let id = r.id.get_ref();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(loc.at(
            r.id.span().start,
            key("id"),
            format!("lane id `{id}` must be non-empty letters, digits, - _ or ."),
        ));
    }
    let backend = BackendKind::parse(r.backend.get_ref()).ok_or_else(|| {
        loc.at(
            r.backend.span().start,
            key("backend"),
            format!("unknown backend `{}` (expected local, openai or anthropic)", r.backend.get_ref()),
        )
    })?;
    if !prompts.contains_key(r.prompt.get_ref()) {
        let known: Vec<&str> = prompts.keys().map(String::as_str).collect();
        return Err(loc.at(
            r.prompt.span().start,
            key("prompt"),
            format!(
                "prompt variant `{}` is not defined under [prompts] (defined: {})",
                r.prompt.get_ref(),
                list(&known)
            ),
        ));
    }
    if backend == BackendKind::Local {
        if !models.contains_key(r.model.get_ref()) {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            return Err(loc.at(
                r.model.span().start,
                key("model"),
                format!(
                    "local lanes name a [models] key; `{}` is not one (defined: {})",
                    r.model.get_ref(),
                    list(&known)
                ),
            ));
        }
    } else if let Some(a) = &r.adapter {
        return Err(loc.at(a.span().start, key("adapter"), "adapters run on local lanes only"));
    } else if let Some(t) = &r.enable_thinking {
        return Err(loc.at(t.span().start, key("enable_thinking"), "a chat-template option of local lanes only"));
    }
    let api = super::lane_api::build(loc, i, &r, backend, root)?;
    let mut sampling = Sampling {
        seed: r.seed.map(Spanned::into_inner),
        stop: r.stop.map(Spanned::into_inner).unwrap_or_default(),
        ..Sampling::default()
    };
    if let Some(m) = r.max_tokens {
        if *m.get_ref() == 0 {
            return Err(loc.at(m.span().start, key("max_tokens"), "must be at least 1"));
        }
        sampling.max_tokens = m.into_inner();
    }
    if let Some(t) = r.temperature {
        if !(0.0..=2.0).contains(t.get_ref()) {
            return Err(loc.at(t.span().start, key("temperature"), "must be between 0 and 2"));
        }
        sampling.temperature = t.into_inner();
    }
    if let Some(p) = r.top_p {
        if !(*p.get_ref() > 0.0 && *p.get_ref() <= 1.0) {
            return Err(loc.at(p.span().start, key("top_p"), "must be in (0, 1]"));
        }
        sampling.top_p = p.into_inner();
    }
    if let Some(k) = r.top_k {
        if *k.get_ref() == 0 {
            return Err(loc.at(k.span().start, key("top_k"), "must be at least 1"));
        }
        sampling.top_k = Some(k.into_inner());
    }
    if let Some(p) = r.repetition_penalty {
        if !(p.get_ref().is_finite() && *p.get_ref() > 0.0) {
            return Err(loc.at(p.span().start, key("repetition_penalty"), "must be a number > 0 (1 = off)"));
        }
        sampling.repetition_penalty = p.into_inner();
    }
    Ok(LaneSpec {
        id: r.id.into_inner(),
        backend,
        model: r.model.into_inner(),
        prompt: r.prompt.into_inner(),
        adapter: r.adapter.map(Spanned::into_inner),
        base_url: r.base_url.map(Spanned::into_inner),
        api_key_env: r.api_key_env.map(Spanned::into_inner),
        sampling,
        api,
        enable_thinking: r.enable_thinking.is_some_and(|t| *t.get_ref()),
    })
}

fn build_savings(
    loc: &Locator<'_>,
    raw: Option<Spanned<RawSavings>>,
    lanes: &[LaneSpec],
) -> Result<SavingsSpec, WorkspaceError> {
    let mut s = SavingsSpec::default();
    let Some(raw) = raw.map(Spanned::into_inner) else { return Ok(s) };
    if let Some(r) = raw.reference {
        if !lanes.iter().any(|l| &l.id == r.get_ref()) {
            let ids: Vec<&str> = lanes.iter().map(|l| l.id.as_str()).collect();
            let msg = format!("no lane `{}` (lanes: {})", r.get_ref(), list(&ids));
            return Err(loc.at(r.span().start, "savings.reference", msg));
        }
        s.reference = Some(r.into_inner());
    }
    if let Some(m) = raw.monthly_runs {
        if *m.get_ref() == 0 {
            return Err(loc.at(m.span().start, "savings.monthly_runs", "must be at least 1"));
        }
        s.monthly_runs = m.into_inner();
    }
    if let Some(c) = raw.finetune_cost_usd {
        if !(c.get_ref().is_finite() && *c.get_ref() >= 0.0) {
            return Err(loc.at(c.span().start, "savings.finetune_cost_usd", "must be a number ≥ 0"));
        }
        s.finetune_cost_usd = Some(c.into_inner());
    }
    Ok(s)
}

/// `[dataset]`: an explicit lane must be local (its tokenizer measures examples); by default the first lane
/// with an adapter, whose prompt variant is also the default system prompt of the examples.
fn build_dataset(
    loc: &Locator<'_>,
    raw: Option<Spanned<RawDataset>>,
    lanes: &[LaneSpec],
    prompts: &BTreeMap<String, PromptVariant>,
) -> Result<DatasetSpec, WorkspaceError> {
    let raw = raw.map(Spanned::into_inner);
    let (raw_prompt, raw_lane) = raw.map_or((None, None), |r| (r.system_prompt, r.lane));
    let adapter_lane = lanes.iter().find(|l| l.adapter.is_some());
    let lane = match raw_lane {
        Some(l) => {
            let Some(spec) = lanes.iter().find(|s| &s.id == l.get_ref()) else {
                let ids: Vec<&str> = lanes.iter().map(|l| l.id.as_str()).collect();
                return Err(loc.at(
                    l.span().start,
                    "dataset.lane",
                    format!("no lane `{}` (lanes: {})", l.get_ref(), list(&ids)),
                ));
            };
            if spec.backend.is_api() {
                let msg = format!(
                    "lane `{}` is an API lane; name a local lane (its tokenizer measures the examples)",
                    spec.id
                );
                return Err(loc.at(l.span().start, "dataset.lane", msg));
            }
            Some(spec)
        }
        None => adapter_lane.or_else(|| lanes.iter().find(|l| !l.backend.is_api())),
    };
    let system_prompt = match raw_prompt {
        Some(p) if !prompts.contains_key(p.get_ref()) => {
            let names: Vec<&str> = prompts.keys().map(String::as_str).collect();
            let msg = format!("no prompt variant `{}` (variants: {})", p.get_ref(), list(&names));
            return Err(loc.at(p.span().start, "dataset.system_prompt", msg));
        }
        Some(p) => p.into_inner(),
        None => adapter_lane.or(lane).or(lanes.first()).map(|l| l.prompt.clone()).unwrap_or_default(),
    };
    Ok(DatasetSpec { system_prompt, lane: lane.map(|l| l.id.clone()) })
}

fn list(items: &[&str]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

pub(super) fn resolve(root: &Path, rel: &str) -> PathBuf {
    let p = PathBuf::from(rel);
    if p.is_absolute() { p } else { root.join(p) }
}
