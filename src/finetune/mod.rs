//! Fine-tuning through a provider's API (`tunebench train --on openai|together`): the dataset checked and
//! priced, uploaded once, the job created and followed (resumable from the workspace's state file), and on
//! success a lane for the fine-tuned model with its price, beside the lanes it should beat.

pub mod client;
pub mod data;
pub mod fireworks;
pub mod job;
pub mod state;

use std::io::Write;
use std::time::Duration;

use crate::engine::api::{Env, lane_key};
use crate::workspace::{BackendKind, LaneSpec, Workspace};

/// OpenAI's API, where a lane names no other.
pub const OPENAI_BASE: &str = "https://api.openai.com/v1";

/// What differs between providers.
#[derive(Debug, Clone, Copy)]
pub struct Provider {
    pub name: &'static str,
    pub dialect: client::Dialect,
    /// The OpenAI-compatible inference URL the new lane asks (and the provider lane is found by).
    pub base: &'static str,
    /// Where fine-tuning lives when not under `base` (Fireworks' management API).
    pub manage: Option<&'static str>,
    /// The key's variable when the lane names none.
    pub key_env: &'static str,
    pub rules: data::Rules,
}

pub const OPENAI: Provider = Provider {
    name: "openai",
    dialect: client::Dialect::OpenAi,
    base: OPENAI_BASE,
    manage: None,
    key_env: "OPENAI_API_KEY",
    rules: data::OPENAI,
};

pub const TOGETHER: Provider = Provider {
    name: "together",
    dialect: client::Dialect::Together,
    base: "https://api.together.xyz/v1",
    manage: None,
    key_env: "TOGETHER_API_KEY",
    rules: data::TOGETHER,
};

pub const FIREWORKS: Provider = Provider {
    name: "fireworks",
    dialect: client::Dialect::Fireworks,
    base: "https://api.fireworks.ai/inference/v1",
    manage: Some("https://api.fireworks.ai/v1"),
    key_env: "FIREWORKS_API_KEY",
    rules: data::FIREWORKS,
};

/// The provider called `name`.
pub fn provider(name: &str) -> Option<Provider> {
    [OPENAI, TOGETHER, FIREWORKS].into_iter().find(|p| p.name == name)
}

/// The provider lane: `--lane`, else the OpenAI-compatible lane on the provider's endpoint, else (OpenAI)
/// the only OpenAI-compatible lane.
pub fn provider_lane<'a>(ws: &'a Workspace, p: &Provider, id: Option<&str>) -> Result<&'a LaneSpec, String> {
    if let Some(id) = id {
        return ws.lane(id).ok_or_else(|| format!("no lane `{id}` in {}", ws.file.display()));
    }
    let openai: Vec<&LaneSpec> = ws.lanes.iter().filter(|l| l.backend == BackendKind::OpenAi).collect();
    let official = |l: &LaneSpec| match l.base_url.as_deref() {
        Some(u) => u.trim_end_matches('/') == p.base,
        None => p.base == OPENAI_BASE,
    };
    match (openai.iter().find(|l| official(l)), openai.as_slice()) {
        (Some(l), _) => Ok(l),
        (None, [one]) if p.base == OPENAI_BASE => Ok(one),
        (None, _) => Err(format!(
            "no lane on {}'s endpoint: add one with backend = \"openai\" and base_url = \"{}\" (its api_key_env is \
             used), or name one with --lane",
            p.name, p.base
        )),
    }
}

/// The key for `lane` (`key_env` in its place; the provider's variable when the lane names none), read from
/// the environment and never written.
pub fn key(
    lane: &LaneSpec,
    p: &Provider,
    key_env: Option<&str>,
    env: &Env,
) -> Result<Option<crate::engine::api::Secret>, String> {
    let mut l = lane.clone();
    l.api_key_env = Some(key_env.or(lane.api_key_env.as_deref()).unwrap_or(p.key_env).to_string());
    lane_key(&l, env)
}

/// A suffix OpenAI takes: up to 64 characters of letters, digits, `-` and `_`.
pub fn check_suffix(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("--suffix `{s}`: 1 to 64 letters, digits, - or _"));
    }
    Ok(())
}

/// The lane id for a fine-tuned model: `ft-<suffix>`, else `ft-<job id>`.
pub fn lane_id(suffix: Option<&str>, job: &str) -> String {
    let raw = suffix.unwrap_or(job);
    let clean: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    format!("ft-{clean}")
}

/// Writes (or updates) the lane that asks the fine-tuned `model`: the provider lane's endpoint and key
/// variable, the short prompt and the adapter lane's sampling, with the fine-tuned price when known.
pub fn write_lane(
    ws: &mut Workspace,
    id: &str,
    provider: &LaneSpec,
    model: &str,
    price: Option<crate::workspace::Price>,
) -> Result<(), String> {
    if let Some(i) = ws.lanes.iter().position(|l| l.id == id) {
        ws.edit_lane(i, crate::workspace::LaneEdit::Model(model.to_string())).map_err(|e| e.to_string())?;
        ws.save().map_err(|e| e.to_string())?;
    } else {
        let prompt = ws.dataset.system_prompt.clone();
        let sampling = ws.adapter_lane().map_or_else(|| provider.sampling.clone(), |l| l.sampling.clone());
        let mut block = format!(
            "\n# The model `tunebench train --on` fine-tuned, with the short prompt it was trained against.\n\
             [[lanes]]\nid = {id:?}\nbackend = \"openai\"\nmodel = {model:?}\nprompt = {prompt:?}\n\
             max_tokens = {}\ntemperature = {:?}\n",
            sampling.max_tokens, sampling.temperature
        );
        if let Some(u) = &provider.base_url {
            block.push_str(&format!("base_url = {u:?}\n"));
        }
        if let Some(k) = &provider.api_key_env {
            block.push_str(&format!("api_key_env = {k:?}\n"));
        }
        append_checked(ws, &block)?;
    }
    if let Some(p) = price
        && !ws.pricing.contains_key(model)
    {
        let cached = p.cached_input_per_mtok.map_or_else(String::new, |c| format!("cached_input_per_mtok = {c:?}\n"));
        let block = format!(
            "\n# The provider's price for this fine-tuned model (tunebench's table, dated there).\n\
             [pricing.{model:?}]\ninput_per_mtok = {:?}\noutput_per_mtok = {:?}\n{cached}",
            p.input_per_mtok, p.output_per_mtok
        );
        append_checked(ws, &block)?;
    }
    Ok(())
}

/// Appends `block` to workspace.toml and reloads it; a result that does not load is put back as it was.
fn append_checked(ws: &mut Workspace, block: &str) -> Result<(), String> {
    let before = std::fs::read_to_string(&ws.file).map_err(|e| format!("{}: {e}", ws.file.display()))?;
    let after = format!("{}{}{block}", before, if before.ends_with('\n') { "" } else { "\n" });
    let write = |text: &str| {
        crate::workspace::store::write_atomic(&ws.file, text.as_bytes())
            .map_err(|e| format!("{}: {e}", ws.file.display()))
    };
    write(&after)?;
    match crate::workspace::load(&ws.root) {
        Ok(reloaded) => {
            *ws = reloaded;
            Ok(())
        }
        Err(e) => {
            write(&before)?;
            Err(format!("the new lane would not load ({e}); workspace.toml is as it was"))
        }
    }
}

/// Prints the events not yet shown: a loss line per metrics event, the message otherwise.
pub fn show_events(out: &mut dyn Write, events: &[client::Event]) {
    for e in events {
        let line = match (e.step, e.train_loss) {
            (Some(step), Some(loss)) => {
                let total = e.total_steps.map_or_else(String::new, |t| format!("/{t}"));
                let valid = e.valid_loss.map_or_else(String::new, |v| format!(" · valid loss {v:.4}"));
                format!("step {step}{total} · train loss {loss:.4}{valid}")
            }
            _ => e.message.clone(),
        };
        let _ = writeln!(out, "  {}", crate::visible::escape_line(&line));
    }
}

/// Now as `2026-11-30T17:20:05Z`.
pub fn now_iso() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (y, m, d) = crate::engine::local::template::civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", t / 3600, t % 3600 / 60, t % 60)
}

/// How long to wait between reads of a running job.
pub fn poll(secs: f64) -> Duration {
    Duration::from_secs_f64(secs.clamp(0.01, 3600.0))
}
