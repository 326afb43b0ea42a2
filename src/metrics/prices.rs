//! Prices: the shipped table (data/prices.toml, source and date inside), workspace overrides, GPU-hour rates.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::workspace::{BackendKind, LaneSpec, Price, Workspace};

const TABLE: &str = include_str!("../../data/prices.toml");

#[derive(Deserialize, Default)]
struct Table {
    models: BTreeMap<String, Price>,
    /// $ per million training tokens, by base model.
    #[serde(default)]
    training: BTreeMap<String, Training>,
    /// Inference prices of models fine-tuned from a base, by base model.
    #[serde(default)]
    finetuned: BTreeMap<String, Price>,
}

#[derive(Deserialize, Clone, Copy)]
struct Training {
    per_mtok: f64,
}

fn table() -> &'static Table {
    static PRICES: OnceLock<Table> = OnceLock::new();
    PRICES.get_or_init(|| toml::from_str::<Table>(TABLE).unwrap_or_default())
}

/// The shipped table, parsed once (a test checks it parses).
pub fn shipped() -> &'static BTreeMap<String, Price> {
    &table().models
}

/// $ per million training tokens for fine-tuning `base` (a listed name or its dated snapshot).
pub fn training(base: &str) -> Option<f64> {
    let t = &table().training;
    let prices: BTreeMap<String, Price> = t
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Price {
                    input_per_mtok: v.per_mtok,
                    output_per_mtok: 0.0,
                    cached_input_per_mtok: None,
                    cache_write_per_mtok: None,
                },
            )
        })
        .collect();
    lookup(&prices, base).map(|p| p.input_per_mtok)
}

/// The one dated snapshot in the training table that `alias` names (`gpt-4o-mini` → `gpt-4o-mini-2024-07-18`);
/// the name itself when it is listed; None when none or several match.
pub fn training_snapshot(alias: &str) -> Option<String> {
    let t = &table().training;
    if t.contains_key(alias) {
        return Some(alias.to_string());
    }
    let mut found =
        t.keys().filter(|k| k.strip_prefix(alias).and_then(|r| r.strip_prefix('-')).is_some_and(is_snapshot));
    match (found.next(), found.next()) {
        (Some(one), None) => Some(one.clone()),
        _ => None,
    }
}

/// The inference price of a model fine-tuned from `base`.
pub fn finetuned(base: &str) -> Option<Price> {
    lookup(&table().finetuned, base).copied()
}

/// The table entry for a model name: exact, else the listed name it extends with a date snapshot
/// (`-2024-07-18`, `-20250929`) or `-latest`, after dropping a provider prefix such as `openai/`. Other
/// suffixes (`-audio-preview`, `-4-6`) are different products with their own prices: unknown. Snapshots
/// priced apart from their family are listed by their full name, which matches first.
pub fn lookup<'a>(table: &'a BTreeMap<String, Price>, model: &str) -> Option<&'a Price> {
    let name = model.rsplit('/').next().unwrap_or(model);
    table.get(name).or_else(|| {
        table
            .iter()
            .filter(|(k, _)| {
                name.strip_prefix(k.as_str()).and_then(|rest| rest.strip_prefix('-')).is_some_and(is_snapshot)
            })
            .max_by_key(|(k, _)| k.len())
            .map(|(_, p)| p)
    })
}

/// `2024-07-18`, `20250929` or `latest`.
fn is_snapshot(v: &str) -> bool {
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let dashed = b.len() == 10 && digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10);
    v == "latest" || (b.len() == 8 && digits(0..8)) || dashed
}

/// How a lane's runs are charged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// $ per million tokens (hosted models; local ones priced per token in workspace.toml).
    Tokens(Price),
    /// $ per hour of the machine, times the run's busy time (local lanes).
    GpuHour(f64),
}

/// A lane's rate: the workspace's `[pricing."model"]` first, then a local model's `gpu_hour_usd`, then the
/// shipped table for API models; None when unknown (shown as "?", never as free).
pub fn rate(ws: &Workspace, lane: &LaneSpec) -> Option<Rate> {
    if let Some(p) = lookup(&ws.pricing, &lane.model) {
        return Some(Rate::Tokens(*p));
    }
    match lane.backend {
        BackendKind::Local => ws.models.get(&lane.model).and_then(|m| m.gpu_hour_usd).map(Rate::GpuHour),
        _ => lookup(shipped(), &lane.model).copied().map(Rate::Tokens),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_resolves_variants() {
        let t = shipped();
        assert!(t.len() >= 15, "{}", t.len());
        let mini = lookup(t, "gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!((mini.input_per_mtok, mini.output_per_mtok), (0.15, 0.60));
        assert_eq!(lookup(t, "openai/gpt-4o").unwrap().input_per_mtok, 2.50);
        assert_eq!(lookup(t, "gpt-4.1-mini").unwrap().input_per_mtok, 0.40, "not gpt-4.1's price");
        assert_eq!(lookup(t, "claude-sonnet-4-5-20250929").unwrap().output_per_mtok, 15.0);
        assert!(lookup(t, "gpt-4o-minimal").is_none());
        assert!(lookup(t, "gpt-4o-audio-preview").is_none(), "a different product, not gpt-4o's price");
        assert_eq!(lookup(t, "o3-2025-04-16").unwrap().input_per_mtok, 2.0);
        assert!(lookup(t, "claude-sonnet-4-6").is_none(), "a newer model is not its predecessor");
        let first_4o = lookup(t, "gpt-4o-2024-05-13").unwrap();
        assert_eq!((first_4o.input_per_mtok, first_4o.output_per_mtok), (5.0, 15.0), "priced apart from gpt-4o");
        assert!(lookup(t, "llama3.1:8b").is_none());
        assert!(TABLE.contains("Source:") && TABLE.contains("November 2025"));
    }
}
