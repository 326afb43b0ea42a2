//! One training example as stored: OpenAI chat messages plus the id and metadata tunebench keeps beside them.

use serde::{Deserialize, Serialize};

/// One chat turn. Roles are kept as written so `check` can report a wrong one instead of failing to load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// Other keys a trainer reads (`weight`, `name` …), kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self { role: role.to_string(), content: content.into(), extra: serde_json::Map::new() }
    }
}

/// Where an example came from; exporters leave it out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// The lane whose answer was promoted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_lane: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The LoRA adapter of the source lane, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// The prompt variant the answer was produced with (the example itself carries the dataset's prompt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_unix_ms: Option<u64>,
    /// 1–5, set when promoted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    /// The answer (or input) was changed by hand from what the lane produced.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub edited: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// `import:FILE` for imported examples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Keys written by another tool or a later version, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// How an example came into the dataset (`meta.source`, else a promoted lane answer), which F3 filters by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A lane's answer promoted with Ctrl+P.
    Promoted,
    /// Written by `tunebench distill`'s teacher.
    Distilled,
    /// `tunebench dataset … import`.
    Imported,
    /// Written by hand or by another tool.
    Other,
}

impl Origin {
    pub const ALL: [Origin; 4] = [Origin::Promoted, Origin::Distilled, Origin::Imported, Origin::Other];

    pub fn name(self) -> &'static str {
        match self {
            Origin::Promoted => "promoted",
            Origin::Distilled => "distilled",
            Origin::Imported => "imported",
            Origin::Other => "other",
        }
    }
}

impl Meta {
    pub fn origin(&self) -> Origin {
        match self.source.as_deref() {
            Some(s) if s == crate::distill::SOURCE => Origin::Distilled,
            Some(s) if s.starts_with("import:") => Origin::Imported,
            _ if self.source_lane.is_some() => Origin::Promoted,
            _ => Origin::Other,
        }
    }
}

/// A stored example: `{"messages": […], "id": …, "meta": {…}}`; other keys on the line are kept as they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub messages: Vec<Message>,
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "is_default_meta")]
    pub meta: Meta,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn is_default_meta(m: &Meta) -> bool {
    *m == Meta::default()
}

impl Example {
    /// A system + user + assistant example (no system message when `system` is empty).
    pub fn chat(id: String, system: &str, user: &str, assistant: &str, meta: Meta) -> Self {
        let mut messages = Vec::with_capacity(3);
        if !system.is_empty() {
            messages.push(Message::new("system", system));
        }
        messages.push(Message::new("user", user));
        messages.push(Message::new("assistant", assistant));
        Self { messages, id, meta, extra: serde_json::Map::new() }
    }

    fn first(&self, role: &str) -> Option<&str> {
        self.messages.iter().find(|m| m.role == role).map(|m| m.content.as_str())
    }

    pub fn system(&self) -> Option<&str> {
        self.first("system")
    }

    /// The first user turn: the input an eval feeds and the text duplicates are judged on.
    pub fn user(&self) -> &str {
        self.first("user").unwrap_or_default()
    }

    /// The last assistant turn: the answer trained on and expected.
    pub fn assistant(&self) -> &str {
        self.messages.iter().rev().find(|m| m.role == "assistant").map_or("", |m| m.content.as_str())
    }

    /// Replaces the content of the first turn with `role` (user) or the last (assistant).
    pub fn set_turn(&mut self, role: &str, content: String) {
        let slot = if role == "assistant" {
            self.messages.iter_mut().rev().find(|m| m.role == role)
        } else {
            self.messages.iter_mut().find(|m| m.role == role)
        };
        if let Some(m) = slot {
            m.content = content;
        }
    }

    /// The JSONL line (serialising strings and numbers cannot fail; the fallback keeps the messages).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| serde_json::json!({ "messages": self.messages, "id": self.id }).to_string())
    }

    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.messages.iter().map(|m| (m.role.as_str(), m.content.as_str())).collect()
    }
}

/// `ex_` and the first 10 hex digits of the sha256 of `parts`.
pub fn hashed_id(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    format!("ex_{}", &crate::metrics::history::hex(&h.finalize())[..10])
}

/// A fresh id from the time, the process and the text, unique among `taken`.
pub fn new_id(text: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let pid = std::process::id().to_le_bytes();
    let mut salt = 0u64;
    loop {
        let id = hashed_id(&[&nanos.to_le_bytes(), &pid, &salt.to_le_bytes(), text.as_bytes()]);
        if !taken(&id) {
            return id;
        }
        salt += 1;
    }
}
