//! The `tunebench` command line: argument parsing and dispatch; each command lives in its own file here.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::app::AppState;
use crate::engine::Registry;
use crate::theme::Theme;
use crate::workspace;

mod count;
pub mod dataset;
pub mod distill;
pub mod eval;
pub mod export;
mod export_merged;
mod export_verify;
pub mod headless;
mod logits;
mod run;
mod runs;
pub mod sweep;
pub mod train;
mod train_hosted;

/// Lanes side by side: is a small model with a LoRA adapter and a short prompt as good as a long prompt?
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Workspace folder (default: the bundled example, workspaces/ticket-triage).
    workspace: Option<PathBuf>,
    /// Colour theme: dark, light, or a path to a theme .toml (default: the workspace's `theme`, else dark).
    #[arg(long)]
    theme: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Download a model from the Hugging Face hub into its local cache (the only command that goes online).
    Pull {
        /// hf:org/name (a safetensors folder) or hf:org/name/file.gguf
        model: String,
    },
    /// Count (and list) the tokens of a text in a local model's own tokenizer.
    Tokenize {
        /// A GGUF file or a model folder (config.json + tokenizer.json).
        #[arg(long)]
        model: PathBuf,
        /// Print the token ids too.
        #[arg(long)]
        ids: bool,
        /// Recognise control-token text such as `<|im_end|>` (off: it is plain text, as user input is).
        #[arg(long)]
        parse_special: bool,
        text: String,
    },
    /// A model's logits at every position of a raw token sequence, in f32 from the file's own weights: one JSON
    /// line per position (top K), or every logit to a safetensors file.
    Logits(logits::LogitsArgs),
    /// Count each lane's whole prompt (system prompt + input + chat format) in its own tokenizer, without running.
    Count {
        workspace: PathBuf,
        /// The input text.
        #[arg(long, conflicts_with = "input_file", required_unless_present = "input_file")]
        input: Option<String>,
        /// Read the input from a file (`-` for standard input).
        #[arg(long)]
        input_file: Option<PathBuf>,
        /// One JSON object per lane: {"lane", "prompt_tokens", "estimated"}.
        #[arg(long)]
        json: bool,
        /// Ask Anthropic's count_tokens endpoint for Anthropic lanes (needs their key; free) instead of estimating.
        #[arg(long)]
        exact: bool,
    },
    /// Train the adapter lane's LoRA adapter on the workspace's dataset (PEFT format in adapters/NAME).
    Train {
        workspace: PathBuf,
        #[command(flatten)]
        args: Box<train::TrainArgs>,
    },
    /// One adapter per setting (nested train subsets × rank × epochs × lr), each scored on the test split
    /// beside the long-prompt reference lane: how many examples before fine-tuning pays.
    Sweep {
        workspace: PathBuf,
        #[command(flatten)]
        args: sweep::SweepArgs,
    },
    /// Evaluate lanes over the test split (dataset/test.jsonl) with evals.toml's assertions: a scoreboard.
    Eval {
        workspace: PathBuf,
        #[command(flatten)]
        args: eval::EvalArgs,
    },
    /// A teacher lane answers unlabeled inputs; the answers that pass evals.toml's checks become training
    /// examples (against the dataset's short prompt, with provenance), the rest go to dataset/rejected.jsonl.
    Distill {
        workspace: PathBuf,
        #[command(flatten)]
        args: distill::DistillArgs,
    },
    /// An adapter in a form a server takes: `--to gguf-lora` (llama.cpp's `--lora`) or `vllm` (PEFT folder,
    /// serve command and lane), with a README.txt.
    Export {
        workspace: PathBuf,
        #[command(flatten)]
        args: export::ExportArgs,
    },
    /// The workspace's training examples: stats, split, check, export, import.
    Dataset {
        workspace: PathBuf,
        #[command(subcommand)]
        action: dataset::DatasetCmd,
    },
    /// The workspace's run history (runs.jsonl): a table, or every field as CSV.
    Runs {
        workspace: PathBuf,
        /// Every recorded field as CSV (RFC 4180), one run per row.
        #[arg(long)]
        csv: bool,
    },
    /// Run lanes on one input without a terminal UI.
    Run {
        workspace: PathBuf,
        /// The input text.
        #[arg(long, conflicts_with = "input_file", required_unless_present = "input_file")]
        input: Option<String>,
        /// Read the input from a file (`-` for standard input).
        #[arg(long)]
        input_file: Option<PathBuf>,
        /// Comma-separated lane ids (default: every lane).
        #[arg(long, value_delimiter = ',')]
        lanes: Vec<String>,
        /// One JSON object per lane, one per line.
        #[arg(long)]
        json: bool,
    },
}

/// The TUI can show this many lanes at once.
const MAX_TUI_LANES: usize = 6;

/// The `tunebench` binary's whole life: parse, run one command, map its result to an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tunebench: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Run { workspace, input, input_file, lanes, json }) => {
                run::run(&workspace, input, input_file, &lanes, json).await
            }
            Some(Command::Count { workspace, input, input_file, json, exact }) => {
                count::count(&workspace, read_input(input, input_file)?, json, exact).await
            }
            Some(Command::Eval { workspace, args }) => eval::main(&workspace, &args).await,
            Some(Command::Distill { workspace, args }) => distill::main(&workspace, &args).await,
            Some(Command::Export { workspace, args }) => export::run(&workspace, &args).await,
            Some(Command::Sweep { workspace, args }) => sweep::run(&workspace, &args, Registry::builtin()).await,
            Some(Command::Runs { workspace, csv }) => runs::runs(&workspace, csv),
            Some(Command::Dataset { workspace, action }) => dataset::run(&workspace, action),
            Some(Command::Train { workspace, args }) if args.hosted.on.is_some() => {
                train_hosted::main(&workspace, &args).await
            }
            Some(Command::Train { workspace, args }) => {
                tokio::task::spawn_blocking(move || train::run(&workspace, &args)).await?
            }
            Some(Command::Pull { model }) => {
                let path = tokio::task::spawn_blocking(move || crate::engine::local::pull::pull(&model)).await??;
                println!("{}", path.display());
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Logits(args)) => tokio::task::spawn_blocking(move || logits::run(&args)).await?,
            Some(Command::Tokenize { model, ids, parse_special, text }) => {
                count::tokenize(&model, ids, parse_special, &text)
            }
            None => run_tui(cli.workspace, cli.theme).await.map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            let message = one_line(&e);
            tracing::error!("{message}");
            eprintln!("tunebench: {message}");
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, each said once: an error whose message already quotes its source (thiserror's
/// `"{path}: {source}"`) would otherwise print the cause twice.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(text.trim()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    // Errors quote files and servers; nothing they hold may act on the terminal.
    crate::visible::escape_line(&line).into_owned()
}

async fn run_tui(path: Option<PathBuf>, theme: Option<String>) -> anyhow::Result<()> {
    let path = path.map_or_else(default_workspace, Ok)?;
    let ws = workspace::load(&path)?;
    if ws.lanes.len() > MAX_TUI_LANES {
        bail!(
            "{}: the TUI shows up to {MAX_TUI_LANES} lanes and this workspace has {}; use `tunebench run --lanes …` or split it",
            ws.file.display(),
            ws.lanes.len()
        );
    }
    let theme = Theme::choose(theme.as_deref(), &ws)?;
    let inputs = workspace::load_inputs(&ws.inputs_dir())?;
    tracing::info!(workspace = %ws.file.display(), lanes = ws.lanes.len(), "starting the TUI");
    let state = AppState::new(ws, inputs, theme);
    crate::runtime::run_tui(state, Registry::builtin()).await
}

/// `--input` as typed; a file (or stdin) read by the rule the TUI's saved inputs follow (`input_from_file`).
pub(crate) fn read_input(input: Option<String>, input_file: Option<PathBuf>) -> anyhow::Result<String> {
    Ok(match (input, input_file) {
        (Some(text), _) => text,
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading the input from standard input")?;
            workspace::input_from_file(&s)
        }
        (None, Some(f)) => workspace::input_from_file(
            &std::fs::read_to_string(&f).with_context(|| format!("reading the input file {}", f.display()))?,
        ),
        (None, None) => bail!("give --input TEXT or --input-file FILE"),
    })
}

/// The bundled example: from the current folder, else from the source tree this binary was built from.
fn default_workspace() -> anyhow::Result<PathBuf> {
    let rel = Path::new("workspaces/ticket-triage");
    let candidates = [rel.to_path_buf(), Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)];
    candidates
        .into_iter()
        .find(|p| p.join(workspace::WORKSPACE_FILE).is_file())
        .context("no workspace given and the example workspaces/ticket-triage was not found; pass a workspace folder")
}

/// Logs go to a file under the user's state folder, never to the terminal the TUI draws on.
fn init_logging() -> Option<()> {
    let dir = dirs::state_dir().or_else(dirs::data_local_dir)?.join("tunebench");
    std::fs::create_dir_all(&dir).ok()?;
    let file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("tunebench.log")).ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TUNEBENCH_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()
}
