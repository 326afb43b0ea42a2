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
    MaxTokens(u32),
    Temperature(f64),
    TopP(f64),
    Seed(Option<u64>),
}

impl Workspace {
    /// Applies a lane edit in memory; the lane's other keys and all comments stay as written.
    pub fn edit_lane(&mut self, lane: usize, edit: LaneEdit) -> Result<(), WorkspaceError> {
        let spec = self.lanes.get(lane).ok_or_else(|| self.rejected(format!("no lane #{lane}")))?;
        match &edit {
            LaneEdit::Prompt(p) if !self.prompts.contains_key(p) => {
                return Err(self.rejected(format!("prompt variant `{p}` is not defined")));
            }
            LaneEdit::Model(m) if spec.backend == BackendKind::Local && !self.models.contains_key(m) => {
                return Err(self.rejected(format!("local lanes name a [models] key; `{m}` is not one")));
            }
            LaneEdit::Adapter(Some(_)) if spec.backend.is_api() => {
                return Err(self.rejected("adapters run on local lanes only".into()));
            }
            LaneEdit::Backend(BackendKind::Local) if !self.models.contains_key(&spec.model) => {
                return Err(self.rejected(format!(
                    "model `{}` is not a [models] key; set the model first, then the backend",
                    spec.model
                )));
            }
            LaneEdit::Backend(k) if k.is_api() && spec.adapter.is_some() => {
                return Err(self.rejected("remove the adapter before moving this lane to an API backend".into()));
            }
            _ => {}
        }
        let table = self.lane_table(lane)?;
        match &edit {
            LaneEdit::Backend(k) => set(table, "backend", Some(value(k.as_str()))),
            LaneEdit::Model(m) => set(table, "model", Some(value(m.as_str()))),
            LaneEdit::Prompt(p) => set(table, "prompt", Some(value(p.as_str()))),
            LaneEdit::Adapter(a) => set(table, "adapter", a.as_deref().map(value)),
            LaneEdit::MaxTokens(n) => set(table, "max_tokens", Some(value(i64::from(*n)))),
            LaneEdit::Temperature(t) => set(table, "temperature", Some(value(*t))),
            LaneEdit::TopP(p) => set(table, "top_p", Some(value(*p))),
            LaneEdit::Seed(s) => set(table, "seed", s.map(|s| value(s as i64))),
        }
        let spec = &mut self.lanes[lane];
        match edit {
            LaneEdit::Backend(k) => spec.backend = k,
            LaneEdit::Model(m) => spec.model = m,
            LaneEdit::Prompt(p) => spec.prompt = p,
            LaneEdit::Adapter(a) => spec.adapter = a,
            LaneEdit::MaxTokens(n) => spec.sampling.max_tokens = n,
            LaneEdit::Temperature(t) => spec.sampling.temperature = t,
            LaneEdit::TopP(p) => spec.sampling.top_p = p,
            LaneEdit::Seed(s) => spec.sampling.seed = s,
        }
        self.dirty = true;
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
                self.doc["prompts"][variant]["text"] = value(text);
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
        for variant in std::mem::take(&mut self.dirty_prompt_files) {
            if let Some(PromptVariant { source: PromptSource::File(f), text, .. }) = self.prompts.get(&variant) {
                write_atomic(&self.resolve(f), text.as_bytes())?;
            }
        }
        write_atomic(&self.file, self.doc.to_string().as_bytes())?;
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
