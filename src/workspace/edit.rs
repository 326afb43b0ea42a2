//! In-memory edits of a workspace, mirrored into its toml_edit document so a save keeps comments and order.

use toml_edit::{Item, Table, value};

use super::WorkspaceError;
use super::model::*;
use super::store::write_atomic;

/// One lane setting the TUI can change.
#[derive(Debug, Clone, PartialEq)]
pub enum LaneEdit {
    Backend(BackendKind),
    Model(String),
    Prompt(String),
    Adapter(Option<String>),
    BaseUrl(Option<String>),
    ApiKeyEnv(Option<String>),
    MaxTokens(u32),
    Temperature(f64),
    TopP(f64),
    TopK(Option<u32>),
    RepetitionPenalty(f64),
    Seed(Option<u64>),
    Stop(Vec<String>),
}

/// Largest seed a TOML integer (i64) can hold.
pub const MAX_SEED: u64 = i64::MAX as u64;

impl LaneEdit {
    fn apply(&self, spec: &mut LaneSpec) {
        match self.clone() {
            Self::Backend(k) => spec.backend = k,
            Self::Model(m) => spec.model = m,
            Self::Prompt(p) => spec.prompt = p,
            Self::Adapter(a) => spec.adapter = a,
            Self::BaseUrl(u) => spec.base_url = u,
            Self::ApiKeyEnv(e) => spec.api_key_env = e,
            Self::MaxTokens(n) => spec.sampling.max_tokens = n,
            Self::Temperature(t) => spec.sampling.temperature = t,
            Self::TopP(p) => spec.sampling.top_p = p,
            Self::TopK(k) => spec.sampling.top_k = k,
            Self::RepetitionPenalty(r) => spec.sampling.repetition_penalty = r,
            Self::Seed(s) => spec.sampling.seed = s,
            Self::Stop(s) => spec.sampling.stop = s,
        }
    }

    /// The workspace.toml key and its new value (None removes the key).
    fn toml(&self) -> (&'static str, Option<Item>) {
        let opt = |v: &Option<String>| v.as_deref().map(value);
        match self {
            Self::Backend(k) => ("backend", Some(value(k.as_str()))),
            Self::Model(m) => ("model", Some(value(m.as_str()))),
            Self::Prompt(p) => ("prompt", Some(value(p.as_str()))),
            Self::Adapter(a) => ("adapter", opt(a)),
            Self::BaseUrl(u) => ("base_url", opt(u)),
            Self::ApiKeyEnv(e) => ("api_key_env", opt(e)),
            Self::MaxTokens(n) => ("max_tokens", Some(value(i64::from(*n)))),
            Self::Temperature(t) => ("temperature", Some(value(*t))),
            Self::TopP(p) => ("top_p", Some(value(*p))),
            Self::TopK(k) => ("top_k", k.map(|k| value(i64::from(k)))),
            Self::RepetitionPenalty(r) => ("repetition_penalty", Some(value(*r))),
            Self::Seed(s) => ("seed", s.and_then(|s| i64::try_from(s).ok()).map(value)),
            Self::Stop(s) if s.is_empty() => ("stop", None),
            Self::Stop(s) => ("stop", stop_array(s).parse::<toml_edit::Value>().ok().map(Item::Value)),
        }
    }
}

impl Workspace {
    /// Applies a lane edit in memory; the lane's other keys and all comments stay as written.
    /// An edit that would make the workspace fail to load is refused, and a no-op changes nothing.
    pub fn edit_lane(&mut self, lane: usize, edit: LaneEdit) -> Result<(), WorkspaceError> {
        let old = self.lanes.get(lane).ok_or_else(|| self.rejected(format!("no lane #{lane}")))?;
        let mut new = old.clone();
        edit.apply(&mut new);
        if new == *old {
            return Ok(());
        }
        self.check_lane(&new).map_err(|m| self.rejected(m))?;
        let (key, item) = edit.toml();
        set(self.lane_table(lane)?, key, item);
        self.lanes[lane] = new;
        self.dirty = true;
        Ok(())
    }

    /// The cross-key rules of loading, for a lane edited in memory.
    fn check_lane(&self, l: &LaneSpec) -> Result<(), String> {
        if !self.prompts.contains_key(&l.prompt) {
            return Err(format!("prompt variant `{}` is not defined", l.prompt));
        }
        if l.model.trim().is_empty() {
            return Err("model must not be empty".into());
        }
        if l.sampling.seed.is_some_and(|s| s > MAX_SEED) {
            return Err(format!("seed must be at most {MAX_SEED}"));
        }
        if l.backend == BackendKind::Local {
            if !self.models.contains_key(&l.model) {
                return Err(format!("local lanes name a [models] key; `{}` is not one (set the model first)", l.model));
            }
            if l.base_url.is_some() || l.api_key_env.is_some() {
                return Err("local lanes take no base_url or api_key_env; clear them first".into());
            }
        } else if l.adapter.is_some() {
            return Err("adapters run on local lanes only; clear the adapter first".into());
        }
        Ok(())
    }

    /// Replaces a prompt variant's text; file-backed variants are rewritten on save.
    pub fn set_prompt_text(&mut self, variant: &str, text: &str) -> Result<(), WorkspaceError> {
        let Some(p) = self.prompts.get_mut(variant) else {
            return Err(self.rejected(format!("prompt variant `{variant}` is not defined")));
        };
        if p.text == text {
            return Ok(());
        }
        p.text = text.to_string();
        match &p.source {
            PromptSource::File(_) => {
                self.dirty_prompt_files.insert(variant.to_string());
            }
            PromptSource::Inline => {
                // Keep the value's decor (a trailing comment); toml_edit picks a multi-line string for multi-line text.
                let item = &mut self.doc["prompts"][variant]["text"];
                let mut new = toml_edit::Value::from(text);
                if let Some(old) = item.as_value() {
                    *new.decor_mut() = old.decor().clone();
                }
                *item = Item::Value(new);
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// Adds a new file-backed variant `prompts/NAME.md` holding `text`.
    pub fn add_prompt_variant(&mut self, name: &str, text: &str) -> Result<(), WorkspaceError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) {
            return Err(self.rejected(format!("variant name `{name}` must be letters, digits, - or _")));
        }
        if self.prompts.contains_key(name) {
            return Err(self.rejected(format!("prompt variant `{name}` already exists")));
        }
        let file = format!("prompts/{name}.md");
        let taken = self
            .prompts
            .values()
            .any(|p| matches!(&p.source, PromptSource::File(f) if self.resolve(f) == self.resolve(&file)));
        if taken || self.resolve(&file).exists() {
            return Err(self.rejected(format!("{file} already exists; pick another variant name")));
        }
        if !self.doc.contains_key("prompts") {
            let mut t = Table::new();
            t.set_implicit(true);
            self.doc.insert("prompts", Item::Table(t));
        }
        let prompts = self.doc["prompts"].as_table_mut().ok_or_else(|| WorkspaceError::Unsavable {
            file: self.file.clone(),
            message: "[prompts] is not a table".into(),
        })?;
        let mut t = Table::new();
        t.insert("file", value(file.as_str()));
        prompts.insert(name, Item::Table(t));
        let source = PromptSource::File(file);
        self.prompts.insert(name.into(), PromptVariant { name: name.into(), source, text: text.into() });
        self.dirty_prompt_files.insert(name.into());
        self.dirty = true;
        Ok(())
    }

    /// Writes workspace.toml and every edited prompt file atomically.
    pub fn save(&mut self) -> Result<(), WorkspaceError> {
        if let Some(read) = &self.on_disk {
            let now = super::store::read_text(&self.file).ok();
            if now.as_ref().is_some_and(|n| n != read) {
                return Err(WorkspaceError::Unsavable {
                    file: self.file.clone(),
                    message: "it changed on disk since it was read (another tunebench command or an editor wrote it): \
                              nothing was written — reopen the workspace to take that change, then edit again"
                        .into(),
                });
            }
        }
        // A variant leaves the to-write list only once its file is written, so a failed save can be retried.
        while let Some(variant) = self.dirty_prompt_files.first().cloned() {
            if let Some(PromptVariant { source: PromptSource::File(f), text, .. }) = self.prompts.get(&variant) {
                write_atomic(&self.resolve(f), text.as_bytes())?;
            }
            self.dirty_prompt_files.remove(&variant);
        }
        let text = self.doc.to_string();
        write_atomic(&self.file, text.as_bytes())?;
        self.on_disk = Some(text);
        self.dirty = false;
        Ok(())
    }

    /// The document as it would be saved.
    pub fn to_toml(&self) -> String {
        self.doc.to_string()
    }

    fn lane_table(&mut self, lane: usize) -> Result<&mut Table, WorkspaceError> {
        let file = self.file.clone();
        self.doc.get_mut("lanes").and_then(Item::as_array_of_tables_mut).and_then(|a| a.get_mut(lane)).ok_or(
            WorkspaceError::Unsavable {
                file,
                message: "lanes must be written as [[lanes]] tables to be edited".into(),
            },
        )
    }

    fn rejected(&self, message: String) -> WorkspaceError {
        WorkspaceError::Rejected(message)
    }
}

/// A stop list as a one-line TOML array of escaped basic strings, so `"\n\n"` stays readable.
pub fn stop_array(stops: &[String]) -> String {
    let items: Vec<String> = stops.iter().map(|s| basic_string(s)).collect();
    format!("[{}]", items.join(", "))
}

fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Sets or removes a key, keeping the existing value's decor (trailing comments) when replacing.
fn set(table: &mut Table, key: &str, new: Option<Item>) {
    match new {
        None => {
            table.remove(key);
        }
        Some(Item::Value(mut v)) => {
            if let Some(Item::Value(old)) = table.get(key) {
                let decor = old.decor().clone();
                *v.decor_mut() = decor;
            }
            table.insert(key, Item::Value(v));
        }
        Some(item) => {
            table.insert(key, item);
        }
    }
}
