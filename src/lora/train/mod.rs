//! LoRA training over a frozen, shared base: AdamW with warmup and decay, loss on answer tokens only,
//! validation with early stopping, resumable checkpoints, deterministic for a seed. Reports progress as
//! events, so the CLI's progress bar and the TUI's chart show the same run.

pub mod data;
pub mod frozen;
mod host;
pub mod job;
pub mod model;
pub mod optim;
pub mod save;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;

pub use data::Sequence;
pub use model::TrainModel;
pub use optim::{AdamW, OptimConfig, Schedule};

use crate::engine::local::BaseWeights;
use crate::lora::Provenance;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("candle: {0}")]
    Candle(String),
    #[error("{0}")]
    Save(String),
    #[error("cannot resume: {0}")]
    Resume(String),
    #[error("{0}")]
    Data(String),
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(crate::engine::local::candle_text(&e))
    }
}

impl From<crate::workspace::WorkspaceError> for TrainError {
    fn from(e: crate::workspace::WorkspaceError) -> Self {
        Self::Save(e.to_string())
    }
}

/// Every setting of a run (the CLI's flags).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Short module names (`q_proj` …).
    pub targets: Vec<String>,
    pub lr: f64,
    pub epochs: usize,
    pub max_steps: Option<usize>,
    /// Examples per micro-batch; an optimizer step takes `batch * grad_accum` examples.
    pub batch: usize,
    pub grad_accum: usize,
    pub max_seq_len: usize,
    pub seed: u64,
    pub warmup_ratio: f64,
    pub schedule: Schedule,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Validate every N steps (None: at the end of each epoch).
    pub eval_every: Option<usize>,
    /// Stop after this many validations without a better loss (0: never).
    pub patience: usize,
    /// Checkpoint every N steps (None: at the end of each epoch).
    pub save_every: Option<usize>,
    /// Recorded in adapter_config.json.
    pub base_name: String,
}

/// What happens during a run, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started { steps: usize, examples: usize, valid: usize, resumed_at: usize },
    Step { step: usize, steps: usize, loss: f64, lr: f64, grad_norm: f64, tokens_per_s: f64, eta_s: f64 },
    Eval { step: usize, valid_loss: f64, best: bool },
    Checkpoint { step: usize, dir: PathBuf },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub steps: usize,
    pub train_loss: Option<f64>,
    pub valid_before: Option<f64>,
    pub valid_best: Option<f64>,
    pub stopped_early: bool,
    pub cancelled: bool,
    pub tokens: u64,
    pub seconds: f64,
    pub peak_rss_bytes: Option<u64>,
}

/// Where a run writes, and what it records.
pub struct Output {
    pub adapter_dir: PathBuf,
    pub provenance: Provenance,
    pub dataset_sha256: String,
    pub resume: bool,
}

/// Trains `cfg` over `train`, validating on `valid`; writes the adapter (the best by validation loss, or the
/// last without a validation set) and checkpoints under `out.adapter_dir`. `stop` ends it between steps.
pub fn run(
    base: Arc<BaseWeights>,
    cfg: &TrainConfig,
    train: &[Sequence],
    valid: &[Sequence],
    out: &mut Output,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Summary, TrainError> {
    if train.is_empty() {
        return Err(TrainError::Data("no training examples left to train on".into()));
    }
    let model = TrainModel::new(base, &cfg.targets, cfg.rank, cfg.alpha, cfg.seed)?;
    let vars = model.vars();
    let per_step = (cfg.batch * cfg.grad_accum).max(1);
    let steps_per_epoch = train.len().div_ceil(per_step);
    let total = cfg.max_steps.unwrap_or(usize::MAX).min(cfg.epochs * steps_per_epoch);
    let warmup = ((total as f64 * cfg.warmup_ratio).ceil() as usize).min(total);
    let ocfg = OptimConfig {
        lr: cfg.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: cfg.weight_decay,
        warmup_steps: warmup,
        total_steps: total,
        schedule: cfg.schedule,
        max_grad_norm: cfg.max_grad_norm,
    };
    let mut opt = AdamW::new(ocfg, &vars)?;
    let config_key = serde_json::to_string(cfg).unwrap_or_default();
    let checkpoints = out.adapter_dir.join("checkpoints");
    let mut st = save::State {
        step: 0,
        config_key: config_key.clone(),
        dataset_sha256: out.dataset_sha256.clone(),
        train_losses: Vec::new(),
        valid_losses: Vec::new(),
        best_valid: None,
        evals_without_gain: 0,
        tokens: 0,
        seconds: 0.0,
    };
    if out.resume {
        let dir = save::latest(&checkpoints)
            .ok_or_else(|| TrainError::Resume(format!("no checkpoint under {}", checkpoints.display())))?;
        let saved = save::restore(&model, &mut opt, &dir)?;
        if saved.config_key != config_key {
            return Err(TrainError::Resume(format!(
                "{} was made with other settings: {}",
                dir.display(),
                saved.config_key
            )));
        }
        if saved.dataset_sha256 != out.dataset_sha256 {
            return Err(TrainError::Resume(format!(
                "{} was made on other data (the dataset changed since)",
                dir.display()
            )));
        }
        st = saved;
    }
    on_event(Event::Started { steps: total, examples: train.len(), valid: valid.len(), resumed_at: st.step });
    let valid_before = if st.step == 0 && !valid.is_empty() {
        let v = model.mean_loss(valid)?;
        st.valid_losses.push((0, v));
        on_event(Event::Eval { step: 0, valid_loss: v, best: false });
        Some(v)
    } else {
        st.valid_losses.first().map(|&(_, v)| v)
    };
    let started = Instant::now();
    let start_step = st.step;
    let seconds_before = st.seconds;
    let tokens_before = st.tokens;
    let (mut stopped_early, mut cancelled) = (false, false);
    let mut order: Vec<usize> = Vec::new();
    let mut order_epoch = usize::MAX;
    while st.step < total {
        if stop.load(Ordering::Relaxed) {
            cancelled = true;
            break;
        }
        let (epoch, k) = (st.step / steps_per_epoch, st.step % steps_per_epoch);
        if epoch != order_epoch {
            // Each epoch's order depends only on the seed and the epoch: a resumed run sees the same batches.
            order = (0..train.len()).collect();
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
                cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ));
            order_epoch = epoch;
        }
        let batch: Vec<&Sequence> =
            order[k * per_step..((k + 1) * per_step).min(train.len())].iter().map(|&i| &train[i]).collect();
        let (loss_sum, grads) = model.loss_and_grads(&batch)?;
        st.tokens += batch.iter().map(|s| s.ids.len() as u64).sum::<u64>();
        let (grad_norm, lr) = opt.step(&vars, &grads)?;
        st.step += 1;
        st.train_losses.push((st.step, loss_sum));
        st.seconds = seconds_before + started.elapsed().as_secs_f64();
        let rate = (st.tokens - tokens_before) as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let eta_s = (total - st.step) as f64 * started.elapsed().as_secs_f64() / (st.step - start_step).max(1) as f64;
        on_event(Event::Step { step: st.step, steps: total, loss: loss_sum, lr, grad_norm, tokens_per_s: rate, eta_s });
        let epoch_end = st.step.is_multiple_of(steps_per_epoch) || st.step == total;
        let eval_now = match cfg.eval_every {
            Some(n) => st.step.is_multiple_of(n.max(1)) || st.step == total,
            None => epoch_end,
        };
        if eval_now && !valid.is_empty() {
            let v = model.mean_loss(valid)?;
            st.valid_losses.push((st.step, v));
            let best = st.best_valid.is_none_or(|b| v < b - 1e-4);
            if best {
                st.best_valid = Some(v);
                st.evals_without_gain = 0;
                out.provenance.train_loss = Some(loss_sum);
                out.provenance.valid_loss = Some(v);
                save::adapter(&model, cfg, &out.adapter_dir, &out.provenance)?;
            } else {
                st.evals_without_gain += 1;
            }
            on_event(Event::Eval { step: st.step, valid_loss: v, best });
            if cfg.patience > 0 && st.evals_without_gain >= cfg.patience {
                stopped_early = true;
            }
        }
        let save_now = match cfg.save_every {
            Some(n) => st.step.is_multiple_of(n.max(1)),
            None => epoch_end,
        };
        if save_now || stopped_early {
            let dir = checkpoints.join(format!("step-{:06}", st.step));
            save::checkpoint(&model, &opt, &st, &dir)?;
            prune(&checkpoints, &dir);
            on_event(Event::Checkpoint { step: st.step, dir });
        }
        if stopped_early {
            break;
        }
    }
    if valid.is_empty() && st.step > 0 {
        out.provenance.train_loss = st.train_losses.last().map(|&(_, l)| l);
        save::adapter(&model, cfg, &out.adapter_dir, &out.provenance)?;
    }
    if cancelled && st.step > 0 {
        let dir = checkpoints.join(format!("step-{:06}", st.step));
        save::checkpoint(&model, &opt, &st, &dir)?;
        prune(&checkpoints, &dir);
    }
    Ok(Summary {
        steps: st.step,
        train_loss: st.train_losses.last().map(|&(_, l)| l),
        valid_before,
        valid_best: st.best_valid,
        stopped_early,
        cancelled,
        tokens: st.tokens,
        seconds: st.seconds,
        peak_rss_bytes: peak_rss(),
    })
}

/// Keeps only the newest checkpoint (each holds the adapter and two optimizer moments).
fn prune(root: &std::path::Path, keep: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let p = e.path();
            if p != keep && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")) {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }
}

/// Peak resident memory of this process (Linux: VmHWM).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}
