//! The TUI loop: input first, then engine events, drained before one render at most every ~16 ms.

mod dataset;
mod distill;
mod eval;
mod train;
mod train_hosted;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::{Action, AppState, Effect, SaveRequest, update};
use crate::engine::{Engine, EngineEvent, LaneIdx, Registry};
use crate::metrics::RunRecord;
use crate::terminal::{TerminalGuard, osc52_copy};
use crate::workspace::{WorkspaceError, save_new_input, store};

const FRAME: Duration = Duration::from_millis(16);

/// Performs effects; owns the engine and the cancellation tokens of live runs.
pub struct Runtime {
    engine: Engine,
    runs: HashMap<LaneIdx, CancellationToken>,
    /// Tokenizers shared by the live counts and F4.
    pub counters: std::sync::Arc<crate::metrics::Counters>,
    /// Where work finished off the loop reports back (exact counts from a provider).
    pub actions: Option<mpsc::UnboundedSender<Action>>,
    /// Stops the training run started from F10.
    train_stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The backends again, for F9's eval runs (which have their own engine and channel).
    registry: Registry,
    /// Stops the eval run started from F9.
    eval_stop: CancellationToken,
    /// The distill run started from F3's D.
    distill_task: Option<tokio::task::AbortHandle>,
    /// Where F10's hosted jobs read their keys (the process environment).
    pub env: crate::engine::api::Env,
    /// Seconds between reads of a hosted job F10 follows.
    pub hosted_poll: f64,
}

impl Runtime {
    pub fn new(registry: Registry, tx: mpsc::UnboundedSender<EngineEvent>) -> Self {
        Self {
            engine: Engine::new(registry.clone(), tx),
            registry,
            eval_stop: CancellationToken::new(),
            distill_task: None,
            runs: HashMap::new(),
            counters: crate::metrics::Counters::new(),
            actions: None,
            train_stop: Default::default(),
            env: crate::engine::api::process_env(),
            hosted_poll: 10.0,
        }
    }

    /// Applies `action`, then every effect it causes (and the effects of their results).
    pub fn dispatch(&mut self, state: &mut AppState, action: Action) {
        // In order: a rerun's Cancel (of the old run) must come before its Start.
        let mut queue: std::collections::VecDeque<Effect> = update(state, action).into();
        while let Some(effect) = queue.pop_front() {
            if let Some(result) = self.perform(state, effect) {
                queue.extend(update(state, result));
            }
        }
    }

    fn perform(&mut self, state: &mut AppState, effect: Effect) -> Option<Action> {
        match effect {
            Effect::Start { lane, run, req } => {
                let token = self.engine.start(lane, run, *req);
                if let Some(old) = self.runs.insert(lane, token) {
                    old.cancel();
                }
                None
            }
            Effect::Cancel { lane } => {
                if let Some(t) = self.runs.remove(&lane) {
                    t.cancel();
                }
                None
            }
            Effect::Save(req) => Some(Action::Saved(save(state, &req).map_err(|e| e.to_string()))),
            Effect::SaveAndQuit(req) => match save(state, &req) {
                Ok(_) => {
                    state.quit = true;
                    None
                }
                Err(e) => Some(Action::Saved(Err(e.to_string()))),
            },
            Effect::SaveInput { text } => {
                let r = save_new_input(&state.ws.inputs_dir(), &state.inputs, &text);
                Some(Action::InputSaved(r.map_err(|e| e.to_string())))
            }
            Effect::Copy(text) => Some(Action::Copied(
                osc52_copy(&text).map(|()| text.chars().count()).map_err(|e| format!("copy failed: {e}")),
            )),
            Effect::Record { input, system_prompt, sampling, report } => {
                let line = RunRecord::now(&state.ws, &input, &system_prompt, &sampling, &report).to_json();
                store::append_line(&state.ws.runs_path(), &line).err().map(|e| Action::RecordFailed(e.to_string()))
            }
            Effect::LoadHistory => {
                let path = state.ws.runs_path();
                self.off_loop(move || {
                    let r = crate::metrics::history::read(&path)
                        .map(|(records, bad)| (records, bad.len()))
                        .map_err(|e| format!("cannot read {}: {e}", path.display()));
                    Action::HistoryLoaded(r)
                })
            }
            Effect::ShowTokens { lane } => {
                let ws = &state.ws;
                let spec = ws.lanes.get(lane)?.clone();
                let model = ws.models.get(&spec.model).filter(|_| !spec.backend.is_api()).cloned();
                let system = ws.prompt_text(&spec.prompt).unwrap_or_default().to_string();
                let input = state.input_text();
                // Anthropic publishes no tokenizer: F4 also asks its count_tokens endpoint for the exact figure.
                if spec.backend == crate::workspace::BackendKind::Anthropic
                    && let Some(tx) = self.actions.clone()
                {
                    let (spec, system, input) = (spec.clone(), system.clone(), input.clone());
                    tokio::spawn(async move {
                        let env = crate::engine::api::process_env();
                        let result = crate::engine::api::count_tokens::anthropic(&spec, &env, &system, &input).await;
                        let _ = tx.send(Action::ExactCount { lane, input, system, result });
                    });
                }
                let counters = self.counters.clone();
                self.off_loop(move || {
                    let result = counters.segments(&spec, model.as_ref(), &system, &input);
                    Action::TokensReady(Box::new(crate::app::TokenView { lane, scroll: 0, result }))
                })
            }
            Effect::LoadDataset => {
                let (ctx, counters) = (crate::dataset::Context::of(&state.ws), self.counters.clone());
                self.off_loop(move || dataset::load(&ctx, &counters))
            }
            Effect::Dataset(op) => {
                let (ctx, counters) = (crate::dataset::Context::of(&state.ws), self.counters.clone());
                self.off_loop(move || dataset::apply(&ctx, &counters, op))
            }
            Effect::ListAdapters => {
                let root = state.ws.root.clone();
                self.off_loop(move || Action::AdaptersListed(crate::lora::found::adapters(&root)))
            }
            Effect::CheckPromote { lane, run, input } => {
                let dir = state.ws.dataset_dir();
                self.off_loop(move || Action::PromoteChecked { lane, run, result: dataset::find_input(&dir, &input) })
            }
            Effect::Promote(p) => {
                let ctx = crate::dataset::Context::of(&state.ws);
                let now =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
                self.off_loop(move || dataset::promote(&ctx, *p, now as u64))
            }
            Effect::StartTraining => {
                self.train_stop = Default::default();
                train::start(&state.ws, self.actions.clone(), self.train_stop.clone())
            }
            Effect::PlanHosted { provider } => {
                let (ws, env) = (state.ws.clone(), self.env.clone());
                self.off_loop(move || train_hosted::plan(&ws, provider, &env))
            }
            Effect::StartHosted { provider, sha256 } => {
                self.hosted(state, provider, train_hosted::Work::Start { sha256 })
            }
            Effect::FollowHosted { provider } => self.hosted(state, provider, train_hosted::Work::Follow),
            Effect::CancelHosted { provider } => self.hosted(state, provider, train_hosted::Work::Cancel),
            Effect::LoadLastTraining => {
                let ws = state.ws.clone();
                self.off_loop(move || train::last(&ws))
            }
            Effect::LoadSweep => {
                let ws = state.ws.clone();
                self.off_loop(move || Action::Training(crate::app::TrainMsg::Sweep(crate::sweep::cached_curve(&ws))))
            }
            Effect::LoadEval => {
                let ws = state.ws.clone();
                self.off_loop(move || eval::load(&ws))
            }
            Effect::RunEval { confirmed, free_only, cases } => {
                self.eval_stop = CancellationToken::new();
                let (registry, tx, stop) = (self.registry.clone(), self.actions.clone(), self.eval_stop.clone());
                eval::start(&state.ws, registry, tx, eval::Consent { confirmed, free_only, cases }, stop)
            }
            Effect::StopEval => {
                self.eval_stop.cancel();
                None
            }
            Effect::EvalPromote { case_id, lane, answer } => {
                let ws = state.ws.clone();
                self.off_loop(move || eval::promote(&ws, &case_id, lane, &answer))
            }
            Effect::StartDistill { teacher, inputs, filter, yes } => {
                if let Some(t) = self.distill_task.take() {
                    t.abort();
                }
                let (action, task) = distill::start(
                    &state.ws,
                    self.registry.clone(),
                    self.actions.clone(),
                    (teacher, inputs, filter, yes),
                );
                self.distill_task = task;
                action
            }
            Effect::StopDistill => {
                let running = self.distill_task.take().is_some_and(|t| {
                    t.abort();
                    true
                });
                running.then(|| {
                    let e = "stopped: the answers that finished are cached, and kept only by a run that ends — \
                             Enter again resumes without paying twice";
                    Action::Distill(crate::app::DistillMsg::Finished(Err(e.into())))
                })
            }
            Effect::StopTraining => {
                self.train_stop.store(true, std::sync::atomic::Ordering::Relaxed);
                None
            }
            Effect::Quit => {
                state.quit = true;
                None
            }
        }
    }

    /// Starts a hosted job's task; without a loop to report to, says so.
    fn hosted(&self, state: &AppState, provider: &'static str, work: train_hosted::Work) -> Option<Action> {
        let Some(tx) = self.actions.clone() else {
            let e = "a hosted job reports to the TUI's event loop".to_string();
            return Some(Action::Training(crate::app::TrainMsg::HostedEnded(Err(e), None)));
        };
        train_hosted::spawn(&state.ws, provider, work, self.env.clone(), self.hosted_poll, tx);
        None
    }

    /// Runs blocking work (file reads, opening a vocabulary) on a blocking thread when the TUI loop is
    /// listening for its result; without a loop (tests, scripts) it runs here and returns the action.
    fn off_loop(&self, work: impl FnOnce() -> Action + Send + 'static) -> Option<Action> {
        match &self.actions {
            Some(tx) => {
                let tx = tx.clone();
                tokio::task::spawn_blocking(move || {
                    let _ = tx.send(work());
                });
                None
            }
            None => Some(work()),
        }
    }

    pub fn cancel_all(&mut self) {
        for (_, t) in self.runs.drain() {
            t.cancel();
        }
        self.train_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.eval_stop.cancel();
    }
}

/// Writes the workspace and edited inputs; the message says what was written.
fn save(state: &mut AppState, req: &SaveRequest) -> Result<String, WorkspaceError> {
    let was_dirty = state.ws.is_dirty();
    state.ws.save()?;
    let inputs = &req.inputs;
    for (i, text) in inputs {
        if let Some(saved) = state.inputs.get_mut(*i) {
            store::write_atomic(&saved.path, format!("{text}\n").as_bytes())?;
            saved.text.clone_from(text);
            state.drafts.remove(&Some(*i));
        }
    }
    let mut msg = format!("saved {}", state.ws.file.display());
    if !was_dirty {
        msg.push_str(" (no workspace changes)");
    }
    if !inputs.is_empty() {
        msg.push_str(&format!(" and {} edited input(s)", inputs.len()));
    }
    if let Some(text) = &req.new_input {
        let saved = save_new_input(&state.ws.inputs_dir(), &state.inputs, text)?;
        msg.push_str(&format!("; new input {}", saved.path.display()));
        state.drafts.remove(&None);
        state.inputs.push(saved);
        if state.input_idx.is_none() {
            state.input_idx = Some(state.inputs.len() - 1);
        }
    }
    Ok(msg)
}

/// Reads terminal events on a plain thread (crossterm's reader blocks) and forwards them.
fn spawn_input_reader(tx: mpsc::UnboundedSender<Event>, stop: CancellationToken) {
    std::thread::Builder::new()
        .name("tunebench-input".into())
        .spawn(move || {
            while !stop.is_cancelled() {
                match event::poll(Duration::from_millis(100)) {
                    Ok(true) => match event::read() {
                        Ok(ev) => {
                            if tx.send(ev).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::error!("terminal read failed: {e}");
                            return;
                        }
                    },
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!("terminal poll failed: {e}");
                        return;
                    }
                }
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("cannot start the input thread: {e}"));
}

fn to_action(ev: Event) -> Option<Action> {
    match ev {
        Event::Key(k) => Some(Action::Key(k)),
        Event::Paste(p) => Some(Action::Paste(p)),
        Event::Mouse(m) => Some(Action::Mouse(m)),
        Event::Resize(w, h) => Some(Action::Resize(w, h)),
        Event::FocusGained | Event::FocusLost => None,
    }
}

/// Runs the TUI until the user quits.
pub async fn run_tui(mut state: AppState, registry: Registry) -> anyhow::Result<()> {
    let mut guard = TerminalGuard::enter()?;
    let size = guard.terminal.size()?;
    state.size = (size.width, size.height);
    let (etx, mut erx) = mpsc::unbounded_channel();
    let (itx, mut irx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    spawn_input_reader(itx, stop.clone());
    let mut rt = Runtime::new(registry, etx);
    let (ctx, mut crx) = mpsc::unbounded_channel();
    rt.actions = Some(ctx.clone());
    let mut live = crate::app::counting::LiveCounts::start(rt.counters.clone(), ctx);
    live.refresh(&state);
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;
    let result = loop {
        if dirty && last_draw.elapsed() >= FRAME {
            if let Err(e) = guard.terminal.draw(|f| crate::ui::render(&state, f)) {
                break Err(e.into());
            }
            last_draw = Instant::now();
            dirty = false;
        }
        if state.quit {
            break Ok(());
        }
        let wait = if dirty { FRAME.saturating_sub(last_draw.elapsed()) } else { Duration::from_secs(3600) };
        tokio::select! {
            biased;
            ev = irx.recv() => match ev {
                Some(ev) => {
                    if let Some(a) = to_action(ev) { rt.dispatch(&mut state, a); }
                    dirty = true;
                }
                None => break Err(anyhow::anyhow!("the terminal input stream ended")),
            },
                        Some(ev) = erx.recv() => {
                rt.dispatch(&mut state, Action::Engine(ev));
                dirty = true;
            },
            Some(counted) = crx.recv() => {
                rt.dispatch(&mut state, counted);
                dirty = true;
            },
            () = tokio::time::sleep(wait) => {}
        }
        // Drain whatever else is pending so a burst of tokens costs one frame, not one per token.
        while let Ok(ev) = irx.try_recv() {
            if let Some(a) = to_action(ev) {
                rt.dispatch(&mut state, a);
            }
        }
        while let Ok(ev) = erx.try_recv() {
            rt.dispatch(&mut state, Action::Engine(ev));
        }
        // Typing, switching inputs or editing prompts changes what each lane would send: count it again.
        live.refresh(&state);
    };
    rt.cancel_all();
    stop.cancel();
    drop(guard);
    result
}
