//! `tunebench train WORKSPACE …`: trains the adapter lane's LoRA adapter on the workspace's dataset, with a
//! progress line (step, loss, tokens/s, ETA) on stderr and a summary on stdout.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use clap::Args;

use crate::lora::train::job::{Job, Options};
use crate::lora::train::{Event, Schedule, TrainConfig};
use crate::workspace;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Adapter folder name under adapters/ (default: the adapter lane's).
    #[arg(long)]
    pub adapter: Option<String>,
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    #[arg(long, default_value_t = 32.0)]
    pub alpha: f64,
    /// all-linear, or module names: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj (Phi-3's fused
    /// ones: qkv_proj,o_proj,gate_up_proj,down_proj)
    #[arg(long, default_value = "all-linear")]
    pub targets: String,
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Passes over the training split (default 3; with --on, the provider's choice unless given).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Examples per micro-batch (each is run at its own length: no padding).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Examples longer than this (in tokens, chat format included) are left out, each named.
    #[arg(long, default_value_t = 1024)]
    pub max_seq_len: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// auto, cpu, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Share of steps spent warming the learning rate up.
    #[arg(long, default_value_t = 0.03)]
    pub warmup_ratio: f64,
    #[arg(long, value_parser = ["cosine", "linear"], default_value = "cosine")]
    pub schedule: String,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Validate every N steps (default: after each epoch).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Stop after this many validations without improvement (0: never).
    #[arg(long, default_value_t = 2)]
    pub patience: usize,
    /// Checkpoint every N steps (default: after each epoch).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Continue the newest run of adapters/NAME (or of its newest version) from its last checkpoint.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Train into adapters/NAME even when it holds an adapter, replacing it and its checkpoints (without
    /// this, a run writes a new version adapters/NAME-vN beside it and nothing trained is ever replaced).
    #[arg(long)]
    pub overwrite: bool,
    /// One JSON object for the summary instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub hosted: super::train_hosted::HostedArgs,
}

impl TrainArgs {
    /// Refuses local-training options with --on: they would be silently ignored.
    pub fn local_options_given(&self) -> Option<&'static str> {
        let d = default_options();
        let c = &d.config;
        let given = [
            (self.adapter.is_some(), "--adapter"),
            (self.rank != c.rank, "--rank"),
            (self.alpha != c.alpha, "--alpha"),
            (self.lr != c.lr, "--lr (the provider takes --lr-mult)"),
            (self.max_steps.is_some(), "--max-steps"),
            (self.batch != c.batch, "--batch"),
            (self.resume, "--resume (a hosted job resumes by itself)"),
            (self.overwrite, "--overwrite"),
            (self.targets != d.targets, "--targets"),
            (self.device != d.device, "--device"),
        ];
        given.into_iter().find(|(g, _)| *g).map(|(_, name)| name)
    }

    pub fn options(&self) -> Options {
        Options {
            adapter: self.adapter.clone(),
            targets: self.targets.clone(),
            device: self.device.clone(),
            resume: self.resume,
            overwrite: self.overwrite,
            out_dir: None,
            subset: None,
            config: TrainConfig {
                rank: self.rank,
                alpha: self.alpha,
                targets: Vec::new(),
                lr: self.lr,
                epochs: self.epochs.unwrap_or(3),
                max_steps: self.max_steps,
                batch: self.batch,
                grad_accum: self.grad_accum,
                max_seq_len: self.max_seq_len,
                seed: self.seed,
                warmup_ratio: self.warmup_ratio,
                schedule: if self.schedule == "linear" { Schedule::Linear } else { Schedule::Cosine },
                weight_decay: self.weight_decay,
                max_grad_norm: 1.0,
                eval_every: self.eval_every,
                patience: self.patience,
                save_every: self.save_every,
                base_name: String::new(),
            },
        }
    }
}

/// The CLI's defaults (what F10 in the TUI trains with).
pub fn default_options() -> Options {
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        args: TrainArgs,
    }
    static DEFAULTS: std::sync::OnceLock<Options> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(|| <Defaults as clap::Parser>::parse_from(["train"]).args.options()).clone()
}

pub fn run(path: &Path, args: &TrainArgs) -> anyhow::Result<ExitCode> {
    let ws = workspace::load(path)?;
    let mut job = Job::prepare(&ws, &args.options()).map_err(anyhow::Error::msg)?;
    for s in &job.skipped {
        eprintln!("tunebench: left out {s}");
    }
    eprintln!(
        "training {} for lane `{}` on {}: {} train / {} valid examples, rank {}, alpha {}, {} modules",
        job.output.adapter_dir.display(),
        job.lane,
        job.device,
        job.train.len(),
        job.valid.len(),
        job.config.rank,
        job.config.alpha,
        job.config.targets.join(",")
    );
    let tty = std::io::stderr().is_terminal();
    let stop = AtomicBool::new(false);
    let mut err = std::io::stderr();
    let mut on_event = |e: Event| {
        let _ = match e {
            Event::Started { resumed_at, .. } if resumed_at > 0 => writeln!(err, "resuming at step {resumed_at}"),
            Event::Step { step, steps, loss, lr, tokens_per_s, eta_s, .. } => {
                let line = format!(
                    "{} step {step}/{steps} · loss {loss:.4} · lr {lr:.2e} · {tokens_per_s:.0} tok/s · ETA {}",
                    bar(step, steps),
                    eta(eta_s)
                );
                if tty { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "{line}") }
            }
            Event::Eval { step, valid_loss, best } => {
                let mark = if best { " (best: saved)" } else { "" };
                if tty {
                    writeln!(err, "\r\x1b[2Kstep {step}: valid loss {valid_loss:.4}{mark}")
                } else {
                    writeln!(err, "step {step}: valid loss {valid_loss:.4}{mark}")
                }
            }
            Event::Checkpoint { .. } | Event::Started { .. } => Ok(()),
        };
    };
    let summary = job.run(&stop, &mut on_event)?;
    if tty {
        eprintln!();
    }
    let rate = summary.tokens as f64 / summary.seconds.max(1e-9);
    if args.json {
        let line = serde_json::json!({
            "adapter": job.output.adapter_dir,
            "steps": summary.steps,
            "train_loss": summary.train_loss,
            "valid_loss_before": summary.valid_before,
            "valid_loss_best": summary.valid_best,
            "stopped_early": summary.stopped_early,
            "tokens": summary.tokens,
            "seconds": summary.seconds,
            "tokens_per_s": rate,
            "peak_rss_bytes": summary.peak_rss_bytes,
        });
        println!("{line}");
    } else {
        let f = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.4}"));
        println!(
            "adapter {} ({} steps{})",
            job.output.adapter_dir.display(),
            summary.steps,
            if summary.stopped_early { ", stopped early" } else { "" }
        );
        println!(
            "train loss {} · valid loss {} → {} (best)",
            f(summary.train_loss),
            f(summary.valid_before),
            f(summary.valid_best)
        );
        println!(
            "{} tokens in {:.0}s ({rate:.0} tok/s) · peak RSS {}",
            summary.tokens,
            summary.seconds,
            summary.peak_rss_bytes.map_or("?".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0))
        );
        match &job.lane_adapter {
            Some(a) if *a != job.output.adapter_dir => println!(
                "lane `{}` still uses {} (set its adapter to this folder to run the new one)",
                job.lane,
                a.display()
            ),
            _ => println!("lane `{}` uses it on its next run", job.lane),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn bar(step: usize, steps: usize) -> String {
    let filled = (20 * step).checked_div(steps).unwrap_or(20).min(20);
    format!("[{}{}]", "█".repeat(filled), "·".repeat(20 - filled))
}

pub fn eta(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 { format!("{}h{:02}m", s / 3600, s % 3600 / 60) } else { format!("{}m{:02}s", s / 60, s % 60) }
}
