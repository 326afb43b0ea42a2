//! The F6 lane-settings form: backend, model, prompt, adapter and sampling, edited in place.

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use tui_textarea::TextArea;

use super::text_area;
use super::{AppState, Mode};
use crate::engine::LaneIdx;
use crate::workspace::{BackendKind, LaneEdit, LaneSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsRow {
    Backend,
    Model,
    Prompt,
    Adapter,
    BaseUrl,
    ApiKeyEnv,
    MaxTokens,
    Temperature,
    TopP,
    TopK,
    RepetitionPenalty,
    Seed,
    Stop,
}

impl SettingsRow {
    pub const ALL: [SettingsRow; 13] = [
        Self::Backend,
        Self::Model,
        Self::Prompt,
        Self::Adapter,
        Self::BaseUrl,
        Self::ApiKeyEnv,
        Self::MaxTokens,
        Self::Temperature,
        Self::TopP,
        Self::TopK,
        Self::RepetitionPenalty,
        Self::Seed,
        Self::Stop,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Backend => "backend",
            Self::Model => "model",
            Self::Prompt => "prompt",
            Self::Adapter => "adapter",
            Self::BaseUrl => "base_url",
            Self::ApiKeyEnv => "api_key_env",
            Self::Stop => "stop",
            Self::MaxTokens => "max_tokens",
            Self::Temperature => "temperature",
            Self::TopP => "top_p",
            Self::TopK => "top_k",
            Self::RepetitionPenalty => "repetition_penalty",
            Self::Seed => "seed",
        }
    }

    /// Rows chosen from a list cycle with ←/→ (Enter types a value instead); the rest are typed.
    pub fn cycles(self) -> bool {
        matches!(self, Self::Backend | Self::Prompt | Self::Adapter)
    }

    /// Whether the row means anything to a lane of `backend` (the keys its workspace.toml entry may hold).
    pub fn applies(self, backend: BackendKind) -> bool {
        match self {
            Self::Adapter | Self::RepetitionPenalty => backend == BackendKind::Local,
            Self::BaseUrl | Self::ApiKeyEnv => backend.is_api(),
            Self::TopK => backend != BackendKind::OpenAi,
            Self::Seed => backend != BackendKind::Anthropic,
            _ => true,
        }
    }

    /// The rows F6 lists for a lane of `backend`.
    pub fn for_backend(backend: BackendKind) -> Vec<SettingsRow> {
        Self::ALL.into_iter().filter(|r| r.applies(backend)).collect()
    }

    pub fn value(self, lane: &LaneSpec) -> String {
        let s = &lane.sampling;
        match self {
            Self::Backend => lane.backend.to_string(),
            Self::Model => lane.model.clone(),
            Self::Prompt => lane.prompt.clone(),
            Self::Adapter => lane.adapter.clone().unwrap_or_default(),
            Self::BaseUrl => lane.base_url.clone().unwrap_or_default(),
            Self::ApiKeyEnv => lane.api_key_env.clone().unwrap_or_default(),
            Self::Stop if s.stop.is_empty() => String::new(),
            Self::Stop => crate::workspace::stop_array(&s.stop),
            Self::MaxTokens => s.max_tokens.to_string(),
            Self::Temperature => s.temperature.to_string(),
            Self::TopP => s.top_p.to_string(),
            Self::TopK => s.top_k.map(|k| k.to_string()).unwrap_or_default(),
            Self::RepetitionPenalty => s.repetition_penalty.to_string(),
            Self::Seed => s.seed.map(|x| x.to_string()).unwrap_or_default(),
        }
    }

    fn parse(self, text: &str) -> Result<LaneEdit, String> {
        let t = text.trim();
        let num = |what: &str| format!("{}: `{t}` is not {what}", self.label());
        Ok(match self {
            Self::Backend => LaneEdit::Backend(BackendKind::parse(t).ok_or_else(|| num("local, openai or anthropic"))?),
            Self::Model if t.is_empty() => return Err("model: must not be empty".into()),
            Self::Model => LaneEdit::Model(t.into()),
            Self::Prompt => LaneEdit::Prompt(t.into()),
            Self::Adapter => LaneEdit::Adapter((!t.is_empty()).then(|| t.to_string())),
            Self::BaseUrl => LaneEdit::BaseUrl((!t.is_empty()).then(|| t.to_string())),
            Self::ApiKeyEnv => LaneEdit::ApiKeyEnv((!t.is_empty()).then(|| t.to_string())),
            Self::Stop if t.is_empty() => LaneEdit::Stop(Vec::new()),
            Self::Stop => {
                // Written as in workspace.toml: a TOML array of strings, so any character can be a stop.
                #[derive(serde::Deserialize)]
                struct V {
                    v: Vec<String>,
                }
                let v: V = toml::from_str(&format!("v = {t}")).map_err(|_| num("a list like [\"\\n\\n\", \"###\"]"))?;
                LaneEdit::Stop(v.v)
            }
            Self::MaxTokens => match t.parse::<u32>() {
                Ok(n) if n > 0 => LaneEdit::MaxTokens(n),
                _ => return Err(num("a whole number ≥ 1")),
            },
            Self::Temperature => match t.parse::<f64>() {
                Ok(x) if (0.0..=2.0).contains(&x) => LaneEdit::Temperature(x),
                _ => return Err(num("a number between 0 and 2")),
            },
            Self::TopP => match t.parse::<f64>() {
                Ok(x) if x > 0.0 && x <= 1.0 => LaneEdit::TopP(x),
                _ => return Err(num("a number in (0, 1]")),
            },
            Self::TopK if t.is_empty() => LaneEdit::TopK(None),
            Self::TopK => match t.parse::<u32>() {
                Ok(k) if k > 0 => LaneEdit::TopK(Some(k)),
                _ => return Err(num("a whole number ≥ 1 (or empty for no limit)")),
            },
            Self::RepetitionPenalty => match t.parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => LaneEdit::RepetitionPenalty(x),
                _ => return Err(num("a number > 0 (1 = off)")),
            },
            Self::Seed if t.is_empty() => LaneEdit::Seed(None),
            Self::Seed => match t.parse::<u64>() {
                Ok(n) if n <= crate::workspace::MAX_SEED => LaneEdit::Seed(Some(n)),
                _ => return Err(num("a whole number up to 2^63−1 (or empty for none)")),
            },
        })
    }
}

#[derive(Debug)]
pub struct SettingsForm {
    pub lane: LaneIdx,
    /// The rows shown: those that apply to the lane's backend (changing the backend changes them).
    pub rows: Vec<SettingsRow>,
    pub row: usize,
    pub editing: Option<TextArea<'static>>,
    pub error: Option<String>,
    /// The adapter folders under the workspace's adapters/ (read by the runtime when the form opens).
    pub adapters: Vec<String>,
}

impl SettingsForm {
    pub fn new(state: &AppState, lane: LaneIdx) -> Self {
        let rows = SettingsRow::for_backend(state.ws.lanes[lane].backend);
        Self { lane, rows, row: 0, editing: None, error: None, adapters: Vec::new() }
    }

    pub fn current(&self) -> SettingsRow {
        self.rows[self.row.min(self.rows.len() - 1)]
    }

    /// Lists the rows for the lane's backend now, staying on the same row where it is still listed.
    fn refresh_rows(&mut self, state: &AppState) {
        let at = self.current();
        self.rows = SettingsRow::for_backend(state.ws.lanes[self.lane].backend);
        self.row = self.rows.iter().position(|r| *r == at).unwrap_or(0);
    }
}

/// Handles a key in the form; returns false when the form closes.
pub fn key(state: &mut AppState, form: &mut SettingsForm, key: KeyEvent) -> bool {
    let row = form.current();
    if let Some(field) = form.editing.as_mut() {
        match key.code {
            KeyCode::Esc => form.editing = None,
            KeyCode::Enter => {
                commit_editing(state, form);
            }
            _ => {
                field.input(key);
            }
        }
        return true;
    }
    let n = form.rows.len();
    match key.code {
        KeyCode::Esc | KeyCode::F(6) => return false,
        KeyCode::Up => form.row = (form.row + n - 1) % n,
        KeyCode::Down => form.row = (form.row + 1) % n,
        KeyCode::Left | KeyCode::Right if row.cycles() => cycle(state, form, key.code == KeyCode::Right),
        // Enter types a value on every row, a listed one too (a name the list lacks): it never cycles.
        KeyCode::Enter => {
            let current = row.value(&state.ws.lanes[form.lane]);
            let mut field = text_area(&current);
            // Typing replaces the old value; arrows keep it for editing.
            field.select_all();
            form.editing = Some(field);
            form.error = None;
        }
        _ => {}
    }
    true
}

fn cycle(state: &mut AppState, form: &mut SettingsForm, forward: bool) {
    let lane = &state.ws.lanes[form.lane];
    let now = form.current().value(lane);
    let options: Vec<String> = match form.current() {
        SettingsRow::Backend => BackendKind::ALL.iter().map(ToString::to_string).collect(),
        // No adapter, then each folder found; a path typed by hand stays among them.
        SettingsRow::Adapter => {
            let mut o: Vec<String> = std::iter::once(String::new()).chain(form.adapters.iter().cloned()).collect();
            if !o.contains(&now) {
                o.push(now.clone());
            }
            o
        }
        _ => state.ws.prompts.keys().cloned().collect(),
    };
    let at = options.iter().position(|o| *o == now).unwrap_or(0);
    let next = if forward { (at + 1) % options.len() } else { (at + options.len() - 1) % options.len() };
    let parsed = form.current().parse(&options[next]);
    commit(state, form, parsed);
}

fn commit(state: &mut AppState, form: &mut SettingsForm, edit: Result<LaneEdit, String>) {
    form.error = match edit.map(|e| state.ws.edit_lane(form.lane, e)) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(msg) => Some(msg),
    };
    form.refresh_rows(state);
}

/// The runtime's listing of adapters/: folders, as `adapters/NAME` (the form the workspace writes).
pub fn on_adapters(state: &mut AppState, found: Result<Vec<String>, String>) {
    let Mode::Settings(form) = &mut state.mode else { return };
    match found {
        Ok(names) => form.adapters = names,
        Err(e) => form.error = Some(e),
    }
}

/// Applies the field being typed, if any; false when its value was refused (the error shows in the form).
pub fn commit_editing(state: &mut AppState, form: &mut SettingsForm) -> bool {
    let Some(field) = form.editing.as_ref() else { return true };
    let text = field.lines().join("");
    let parsed = form.current().parse(&text);
    commit(state, form, parsed);
    if form.error.is_none() {
        form.editing = None;
    }
    form.error.is_none()
}

/// Pasted text goes into the field being edited.
pub fn paste(form: &mut SettingsForm, text: &str) {
    if let Some(field) = form.editing.as_mut() {
        field.insert_str(text.replace('\n', " "));
    }
}
