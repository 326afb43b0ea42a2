//! The validated, typed workspace: prompts, models, lanes and pricing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where a lane's answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    Local,
    OpenAi,
    Anthropic,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [Self::Local, Self::OpenAi, Self::Anthropic];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_api(self) -> bool {
        !matches!(self, Self::Local)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a prompt variant's text is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptSource {
    /// `file = "…"`, as written (relative to the workspace root unless absolute).
    File(String),
    /// `text = "…"` inside workspace.toml.
    Inline,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromptVariant {
    pub name: String,
    pub source: PromptSource,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    /// As written in workspace.toml.
    pub path_raw: String,
    /// Resolved against the workspace root.
    pub path: PathBuf,
    /// `auto | cpu | cuda:N | metal`.
    pub device: String,
    /// What an hour of the machine running this model costs, for pricing its runs by busy time.
    pub gpu_hour_usd: Option<f64>,
    /// `chat_template`: the Jinja text used in place of the model file's own template (read from the file
    /// it names, or written inline).
    pub chat_template: Option<String>,
    /// `kv_cache`: how the CPU engine holds a run's keys and values.
    pub kv_cache: KvCacheType,
}

/// The element of the CPU engine's KV cache (`kv_cache = "f32" | "f16"`). f32 keeps the numbers transformers
/// gives; f16 (llama.cpp's default) halves the bytes a decoded token reads from the cache, which at a long
/// prompt rival the weights', at the cost of rounding keys and values to f16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvCacheType {
    #[default]
    F32,
    F16,
}

impl KvCacheType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        }
    }
}

/// How the savings projection is set up (`[savings]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SavingsSpec {
    /// The lane others are compared against (default: the first).
    pub reference: Option<String>,
    /// Runs a month, for the monthly figures.
    pub monthly_runs: u64,
    /// One-off cost of fine-tuning the adapter, for the break-even point.
    pub finetune_cost_usd: Option<f64>,
}

impl Default for SavingsSpec {
    fn default() -> Self {
        Self { reference: None, monthly_runs: 100_000, finetune_cost_usd: None }
    }
}

/// How training examples are stored (`[dataset]`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatasetSpec {
    /// The prompt variant examples are stored against (default: the adapter lane's).
    pub system_prompt: String,
    /// The local lane whose tokenizer and context measure examples (default: the adapter lane).
    pub lane: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub max_tokens: u32,
    pub temperature: f64,
    pub top_p: f64,
    /// Sample among the k most likely tokens (local lanes; None = no limit).
    pub top_k: Option<u32>,
    /// >1 discourages repeating recent tokens (local lanes; 1 = off).
    pub repetition_penalty: f64,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: None,
            repetition_penalty: 1.0,
            seed: None,
            stop: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaneSpec {
    pub id: String,
    pub backend: BackendKind,
    /// A `[models]` key for local lanes; the API's model name otherwise.
    pub model: String,
    pub prompt: String,
    /// A PEFT adapter folder, as written.
    pub adapter: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub sampling: Sampling,
    /// Timeouts, retries and output format of API lanes (defaults on local lanes, which use none of it).
    pub api: ApiOptions,
    /// Passed to a local model's chat template: Qwen3 and SmolLM3 think first unless it is false.
    pub enable_thinking: bool,
}

/// How an API lane talks to its server.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiOptions {
    /// Opening the TCP/TLS connection.
    pub connect_timeout: Duration,
    /// From sending the request to the response's first bytes.
    pub first_byte_timeout: Duration,
    /// The longest gap between two pieces of a streamed answer.
    pub idle_timeout: Duration,
    /// Further attempts after a transient failure, made only before any answer text arrived.
    pub max_retries: u32,
    /// Requests an eval keeps in flight on this lane (None: `eval --concurrency`, default 4).
    pub concurrency: Option<u32>,
    pub response_format: ResponseFormat,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_retries: 4,
            concurrency: None,
            response_format: ResponseFormat::Text,
        }
    }
}

/// The answer's format as requested from an OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    /// JSON mode: any valid JSON object.
    JsonObject,
    /// Structured output: JSON matching a schema; `json_schema` is the request's `{"name", "schema", "strict"}`.
    JsonSchema {
        file: String,
        json_schema: serde_json::Value,
    },
}

impl ResponseFormat {
    pub const NAMES: [&str; 3] = ["text", "json_object", "json_schema"];
}

impl LaneSpec {
    /// Where an API lane's requests go: its `base_url`, else its backend's default ("" for local lanes).
    pub fn base_url(&self) -> &str {
        self.base_url.as_deref().or(self.backend.default_base_url()).unwrap_or_default()
    }
}

/// The host (and port) of an http(s) URL, without credentials: `api.openai.com`, `127.0.0.1:8080`.
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

impl BackendKind {
    /// Where the lane's requests go unless `base_url` says otherwise.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::Local => None,
            Self::OpenAi => Some("https://api.openai.com/v1"),
            Self::Anthropic => Some("https://api.anthropic.com"),
        }
    }

    /// The environment variable holding the key unless `api_key_env` names another.
    pub fn default_key_env(self) -> Option<&'static str> {
        match self {
            Self::Local => None,
            Self::OpenAi => Some("OPENAI_API_KEY"),
            Self::Anthropic => Some("ANTHROPIC_API_KEY"),
        }
    }
}

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: Option<f64>,
    /// Writing a prompt prefix into the provider's cache (Anthropic charges it above the input price).
    #[serde(default)]
    pub cache_write_per_mtok: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    /// The workspace.toml path.
    pub file: PathBuf,
    pub name: String,
    pub theme: Option<String>,
    /// Line of `theme` in workspace.toml, for errors about it.
    pub theme_line: usize,
    pub prompts: BTreeMap<String, PromptVariant>,
    pub models: BTreeMap<String, ModelSpec>,
    pub lanes: Vec<LaneSpec>,
    pub pricing: BTreeMap<String, Price>,
    pub savings: SavingsSpec,
    pub dataset: DatasetSpec,
    /// The editable document: comments and key order survive a save.
    pub(crate) doc: toml_edit::DocumentMut,
    /// Prompt variants whose file must be rewritten on save.
    pub(crate) dirty_prompt_files: std::collections::BTreeSet<String>,
    /// workspace.toml as it was read or last written: a save refuses to replace a file something else changed
    /// meanwhile (a `train --on` lane, an edit in another editor). None when not read from a file.
    pub(crate) on_disk: Option<String>,
    pub(crate) dirty: bool,
}

impl Workspace {
    pub fn lane(&self, id: &str) -> Option<&LaneSpec> {
        self.lanes.iter().find(|l| l.id == id)
    }

    pub fn prompt_text(&self, variant: &str) -> Option<&str> {
        self.prompts.get(variant).map(|p| p.text.as_str())
    }

    pub fn resolve(&self, rel: &str) -> PathBuf {
        let p = PathBuf::from(rel);
        if p.is_absolute() { p } else { self.root.join(p) }
    }

    /// Unsaved in-memory edits exist.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn runs_path(&self) -> PathBuf {
        self.root.join("runs.jsonl")
    }

    pub fn inputs_dir(&self) -> PathBuf {
        self.root.join("inputs")
    }

    pub fn dataset_dir(&self) -> PathBuf {
        self.root.join("dataset")
    }

    /// The system prompt training examples carry (the `[dataset] system_prompt` variant's text).
    pub fn dataset_system_prompt(&self) -> &str {
        self.prompt_text(&self.dataset.system_prompt).unwrap_or_default()
    }

    /// The first lane with a LoRA adapter: the one training writes for.
    pub fn adapter_lane(&self) -> Option<&LaneSpec> {
        self.lanes.iter().find(|l| l.adapter.is_some())
    }

    /// The lane whose tokenizer measures examples, with its model.
    pub fn dataset_lane(&self) -> Option<(&LaneSpec, &ModelSpec)> {
        let lane = self.lane(self.dataset.lane.as_deref()?)?;
        Some((lane, self.models.get(&lane.model)?))
    }
}
