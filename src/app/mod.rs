//! Application state and its single mutation point, `update(&mut AppState, Action) -> Vec<Effect>`; no I/O here.

pub mod counting;
mod dataset;
mod distill;
pub mod editing;
mod eval;
pub mod geometry;
mod keys;
mod lane;
mod promote;
mod prompt;
mod runs;
mod settings;
mod train;
mod train_hosted;
mod update;
pub mod views;

use std::collections::BTreeMap;

use ratatui::crossterm::event::{KeyEvent, MouseEvent};
use tui_textarea::TextArea;

use crate::engine::{EngineEvent, LaneIdx, RunId, RunRequest};
use crate::metrics::LaneReport;
use crate::theme::Theme;
use crate::workspace::{SavedInput, Workspace};

pub use dataset::{DatasetOp, DatasetView, Pane};
pub use distill::{DistillField, DistillMsg, DistillState, DistillStatus, filter_name};
pub use eval::{EvalData, EvalMsg, EvalPane, EvalView, shown_answer};
pub use lane::{LaneState, LaneStatus};
pub use promote::{PromoteField, PromoteForm, Promotion};
pub use prompt::PromptEditor;
pub use settings::{SettingsForm, SettingsRow};
pub use train::{Hosted, HostedPlan, Target, TrainMsg, TrainState, TrainStatus};
pub use train_hosted::targets as train_targets;
pub use update::update;

/// Where typing goes: the input editor, or the lanes (keys then scroll, copy, run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Input,
    Lanes,
}

/// The overlay on top of the main screen, if any.
#[derive(Debug)]
pub enum Mode {
    Normal,
    Help {
        scroll: u16,
    },
    /// The savings panel (F12, or `$` with the lanes focused).
    Savings,
    /// A lane's prompt exactly as sent, token by token (F4).
    Tokens(Box<TokenView>),
    /// The run history from runs.jsonl, newest first (F9).
    History {
        scroll: u16,
        records: Vec<serde_json::Value>,
        skipped: usize,
    },
    Prompt(Box<PromptEditor>),
    Settings(Box<SettingsForm>),
    /// Ctrl+P: the focused lane's answer on its way into the dataset.
    Promote(Box<PromoteForm>),
    /// F3: the training examples.
    Dataset(Box<DatasetView>),
    /// F10: training the adapter (the run itself lives in `AppState::train`).
    Train,
    /// F3's D: distilling a teacher lane's answers into the dataset (the run lives in `AppState::distill`).
    Distill,
    /// F9: the eval scoreboard and case browser (its state lives in `AppState::eval`).
    Eval,
    ConfirmQuit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub level: Level,
    pub text: String,
}

/// Everything that can happen to the app.
#[derive(Debug)]
pub enum Action {
    Key(KeyEvent),
    Paste(String),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Engine(EngineEvent),
    /// Result of `Effect::Save`/`SaveAndQuit`: a summary, or the error text.
    Saved(Result<String, String>),
    /// Result of `Effect::SaveInput`.
    InputSaved(Result<SavedInput, String>),
    /// Result of `Effect::Copy` (chars copied) or an error text.
    Copied(Result<usize, String>),
    /// A runs.jsonl append failed.
    RecordFailed(String),
    /// Live prompt counts for the text as typed, one per lane.
    Counted(Vec<Result<crate::metrics::Count, String>>),
    /// Result of `Effect::ShowTokens`.
    TokensReady(Box<TokenView>),
    /// An exact prompt count from the provider (Anthropic's count_tokens), for one lane.
    /// `input` and `system` are what was counted: a figure for text since edited is dropped.
    ExactCount {
        lane: usize,
        input: String,
        system: String,
        result: Result<u64, String>,
    },
    /// Result of `Effect::LoadHistory`: the records, and how many lines were not records.
    HistoryLoaded(Result<(Vec<serde_json::Value>, usize), String>),
    /// Result of `Effect::LoadDataset` or `Effect::Dataset`: the dataset as now on disk, and what was done.
    DatasetLoaded(Result<(Box<crate::dataset::Report>, Option<String>), String>),
    /// Result of `Effect::Promote`: what was stored where, or why not.
    Promoted(Result<String, String>),
    /// Result of `Effect::ListAdapters`: the folders under adapters/, as `adapters/NAME`.
    AdaptersListed(Result<Vec<String>, String>),
    /// Result of `Effect::CheckPromote`: where the input already is in the dataset (None: nowhere).
    PromoteChecked {
        lane: LaneIdx,
        run: RunId,
        result: Result<Option<String>, String>,
    },
    /// A training run's progress.
    Training(TrainMsg),
    /// The eval view's data, a run's progress, a promotion's result.
    Eval(EvalMsg),
    /// A distill run's progress and result.
    Distill(DistillMsg),
}

/// F4's content: one lane's rendered prompt split into tokens, or why it could not be.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenView {
    pub lane: usize,
    pub scroll: u16,
    pub result: Result<(crate::metrics::Count, Vec<crate::metrics::count::Segment>), String>,
}

/// I/O the runtime performs for `update`; results come back as actions.
#[derive(Debug)]
pub enum Effect {
    Start {
        lane: LaneIdx,
        run: RunId,
        req: Box<RunRequest>,
    },
    Cancel {
        lane: LaneIdx,
    },
    /// Write workspace.toml, edited prompt files, edited saved inputs and a typed new input.
    Save(SaveRequest),
    SaveAndQuit(SaveRequest),
    SaveInput {
        text: String,
    },
    Copy(String),
    /// Read runs.jsonl (answered with `Action::HistoryLoaded`).
    LoadHistory,
    /// Read the test cases, evals.toml and the cache into a scoreboard (answered with `EvalMsg::Loaded`).
    LoadEval,
    /// Run the (case, lane) pairs the cache lacks, of the cases in `cases` (all when None); paid calls need
    /// `confirmed`.
    RunEval {
        confirmed: bool,
        /// Leave out the paid lanes' runs (the user declined them but wants the rest).
        free_only: bool,
        cases: Option<std::ops::Range<usize>>,
    },
    StopEval,
    /// Make a lane's answer the expected answer of a test case.
    EvalPromote {
        case_id: String,
        lane: LaneIdx,
        answer: String,
    },
    /// Read the dataset with its figures and check findings for F3.
    LoadDataset,
    /// Change the dataset (re-read first), then read it back.
    Dataset(DatasetOp),
    /// List the workspace's adapters/ folders for F6 (answered with `Action::AdaptersListed`).
    ListAdapters,
    /// Look the input up in the dataset before the promote dialog opens (answered with `Action::PromoteChecked`).
    CheckPromote {
        lane: LaneIdx,
        run: RunId,
        input: String,
    },
    /// Store a promoted (or rejected) example.
    Promote(Box<Promotion>),
    /// Train the adapter lane's adapter on the dataset (progress comes back as `Action::Training`).
    StartTraining,
    StopTraining,
    /// Check the dataset against `provider`'s rules and price the job; nothing is sent (answered with
    /// `TrainMsg::HostedPlan`).
    PlanHosted {
        provider: &'static str,
    },
    /// Upload and start the confirmed job (only if the dataset is still the one priced), then follow it.
    StartHosted {
        provider: &'static str,
        sha256: String,
    },
    /// Follow the job in progress (finetune-job.json).
    FollowHosted {
        provider: &'static str,
    },
    /// Ask the provider to cancel the job in progress.
    CancelHosted {
        provider: &'static str,
    },
    /// Distill the teacher lane's answers to `inputs` into train.jsonl (progress comes back as `Action::Distill`);
    /// paid calls only with `yes`.
    StartDistill {
        teacher: String,
        inputs: String,
        filter: crate::distill::Filter,
        yes: bool,
    },
    StopDistill,
    /// Read the adapter lane's last training curve from its checkpoint (answered with `Action::Training`).
    LoadLastTraining,
    /// Read the sweep's points and their cached scores (answered with `TrainMsg::Sweep`).
    LoadSweep,
    /// Tokenize one lane's prompt for F4 (answered with `Action::TokensReady`).
    ShowTokens {
        lane: usize,
    },
    Record {
        input: String,
        /// The system prompt the run was sent with (hashed into the record).
        system_prompt: String,
        /// The sampling settings the run was sent with.
        sampling: Box<crate::workspace::Sampling>,
        report: Box<LaneReport>,
    },
    Quit,
}

/// What a save writes besides the workspace.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SaveRequest {
    /// Edited saved inputs: (index, text).
    pub inputs: Vec<(usize, String)>,
    /// Text typed in the new-input slot, saved as the next numbered input.
    pub new_input: Option<String>,
}

pub struct AppState {
    pub ws: Workspace,
    pub theme: Theme,
    pub lanes: Vec<LaneState>,
    pub editor: TextArea<'static>,
    pub inputs: Vec<SavedInput>,
    /// The saved input shown in the editor; None for a new, unsaved one.
    pub input_idx: Option<usize>,
    /// Edited texts of inputs, by slot (None = the new-input slot), kept while browsing.
    pub drafts: BTreeMap<Option<usize>, String>,
    /// The lanes' last results on the inputs not shown, by slot; `lanes` holds the shown input's.
    pub results: BTreeMap<Option<usize>, Vec<LaneState>>,
    pub focus: Focus,
    pub selected: LaneIdx,
    pub mode: Mode,
    pub status: Option<Status>,
    pub size: (u16, u16),
    pub next_run: RunId,
    pub quit: bool,
    /// The training run started from F10, if any.
    pub train: TrainState,
    pub eval: EvalView,
    /// The distill view's settings and its run, once opened.
    pub distill: Option<DistillState>,
}

impl AppState {
    pub fn new(ws: Workspace, inputs: Vec<SavedInput>, theme: Theme) -> Self {
        let lanes = vec![LaneState::default(); ws.lanes.len()];
        let mut state = Self {
            ws,
            theme,
            lanes,
            editor: TextArea::default(),
            input_idx: None,
            inputs,
            drafts: BTreeMap::new(),
            results: BTreeMap::new(),
            focus: Focus::Input,
            selected: 0,
            mode: Mode::Normal,
            status: None,
            size: (80, 24),
            next_run: 1,
            quit: false,
            train: TrainState::default(),
            eval: EvalView::default(),
            distill: None,
        };
        if !state.inputs.is_empty() {
            state.show_input(Some(0));
        }
        state.style_editor();
        state
    }

    pub fn input_text(&self) -> String {
        self.editor.lines().join("\n")
    }

    /// The on-disk text of the shown slot.
    fn saved_text(&self, slot: Option<usize>) -> &str {
        slot.and_then(|i| self.inputs.get(i)).map_or("", |s| s.text.as_str())
    }

    /// Keeps the editor's edits as a draft, then shows another slot (its draft if any).
    pub(crate) fn show_input(&mut self, slot: Option<usize>) {
        self.stash_draft();
        let text = self.drafts.get(&slot).cloned().unwrap_or_else(|| self.saved_text(slot).to_string());
        self.swap_results(self.input_idx, slot);
        self.input_idx = slot;
        self.editor = text_area(&text);
        self.style_editor();
    }

    pub(crate) fn stash_draft(&mut self) {
        let text = self.input_text();
        if text == self.saved_text(self.input_idx) {
            self.drafts.remove(&self.input_idx);
        } else {
            self.drafts.insert(self.input_idx, text);
        }
    }

    /// Unsaved work that quitting would lose.
    pub fn has_unsaved(&mut self) -> bool {
        self.stash_draft();
        // Whitespace typed in the new-input slot is not worth a question (and a save would not keep it).
        let drafts = self.drafts.iter().any(|(slot, text)| slot.is_some() || !text.trim().is_empty());
        self.ws.is_dirty() || drafts
    }

    /// The input texts a save must write, so that saving leaves nothing unsaved.
    pub(crate) fn save_request(&mut self) -> SaveRequest {
        self.stash_draft();
        SaveRequest {
            inputs: self.drafts.iter().filter_map(|(k, v)| k.map(|i| (i, v.clone()))).collect(),
            new_input: self.drafts.get(&None).filter(|t| !t.trim().is_empty()).cloned(),
        }
    }

    /// Whether lane `i`'s last run matches what it would send now (input, settings and prompt unchanged).
    pub fn run_is_current(&self, i: usize, input: &str) -> bool {
        let (Some(lane), Some(spec)) = (self.lanes.get(i), self.ws.lanes.get(i)) else { return false };
        lane.run_is_current(input, spec, self.ws.prompt_text(&spec.prompt).unwrap_or_default())
    }

    /// Prompt tokens lane `i`'s footer shows (see `LaneState::shown_prompt_tokens`).
    pub fn shown_prompt_tokens(&self, i: usize, input: &str) -> Option<(u64, bool)> {
        self.lanes.get(i)?.shown_prompt_tokens(self.run_is_current(i, input))
    }

    pub(crate) fn style_editor(&mut self) {
        use ratatui::style::{Modifier, Style};
        let cursor = if self.focus == Focus::Input && matches!(self.mode, Mode::Normal) {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        self.editor.set_cursor_style(cursor);
        self.editor.set_cursor_line_style(Style::default());
        self.editor.set_style(Style::default().fg(self.theme.fg));
    }

    pub(crate) fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Status { level: Level::Info, text: text.into() });
    }

    pub(crate) fn warn(&mut self, text: impl Into<String>) {
        self.status = Some(Status { level: Level::Warn, text: text.into() });
    }

    pub(crate) fn error(&mut self, text: impl Into<String>) {
        self.status = Some(Status { level: Level::Error, text: text.into() });
    }
}

/// A text area holding `text`, cursor at the start.
pub(crate) fn text_area(text: &str) -> TextArea<'static> {
    let lines: Vec<String> =
        if text.is_empty() { vec![String::new()] } else { text.split('\n').map(str::to_string).collect() };
    TextArea::new(lines)
}
