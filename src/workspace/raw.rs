//! The serde shape of workspace.toml as written by users; spans locate each value for errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkspace {
    pub name: Spanned<String>,
    pub theme: Option<Spanned<String>>,
    #[serde(default)]
    pub prompts: BTreeMap<String, Spanned<RawPrompt>>,
    #[serde(default)]
    pub models: BTreeMap<String, Spanned<RawModel>>,
    #[serde(default)]
    pub lanes: Vec<Spanned<RawLane>>,
    #[serde(default)]
    pub pricing: BTreeMap<String, Spanned<RawPrice>>,
    pub savings: Option<Spanned<RawSavings>>,
    pub dataset: Option<Spanned<RawDataset>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataset {
    pub system_prompt: Option<Spanned<String>>,
    pub lane: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSavings {
    pub reference: Option<Spanned<String>>,
    pub monthly_runs: Option<Spanned<u64>>,
    pub finetune_cost_usd: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrompt {
    pub file: Option<Spanned<String>>,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub path: Spanned<String>,
    pub device: Option<Spanned<String>>,
    pub gpu_hour_usd: Option<Spanned<f64>>,
    pub chat_template: Option<Spanned<String>>,
    pub kv_cache: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLane {
    pub id: Spanned<String>,
    pub backend: Spanned<String>,
    pub model: Spanned<String>,
    pub prompt: Spanned<String>,
    pub adapter: Option<Spanned<String>>,
    pub base_url: Option<Spanned<String>>,
    pub api_key_env: Option<Spanned<String>>,
    pub max_tokens: Option<Spanned<u32>>,
    pub temperature: Option<Spanned<f64>>,
    pub top_p: Option<Spanned<f64>>,
    pub top_k: Option<Spanned<u32>>,
    pub repetition_penalty: Option<Spanned<f64>>,
    pub seed: Option<Spanned<u64>>,
    pub stop: Option<Spanned<Vec<String>>>,
    pub connect_timeout_s: Option<Spanned<f64>>,
    pub first_byte_timeout_s: Option<Spanned<f64>>,
    pub idle_timeout_s: Option<Spanned<f64>>,
    pub max_retries: Option<Spanned<u32>>,
    pub concurrency: Option<Spanned<u32>>,
    pub response_format: Option<Spanned<String>>,
    pub json_schema: Option<Spanned<String>>,
    pub enable_thinking: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_mtok: Spanned<f64>,
    pub output_per_mtok: Spanned<f64>,
    pub cached_input_per_mtok: Option<Spanned<f64>>,
    pub cache_write_per_mtok: Option<Spanned<f64>>,
}
