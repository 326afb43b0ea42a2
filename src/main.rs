//! The `tunebench` command: the TUI by default, `run` for headless runs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use tunebench::app::AppState;
use tunebench::engine::Registry;
use tunebench::ui::theme::Theme;
use tunebench::{headless, workspace};

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
        args: tunebench::train_cmd::TrainArgs,
    },
    /// Evaluate lanes over the test split (dataset/test.jsonl) with evals.toml's assertions: a scoreboard.
    Eval {
        workspace: PathBuf,
        #[command(flatten)]
        args: tunebench::eval_cmd::EvalArgs,
    },
    /// The workspace's training examples: stats, split, check, export, import.
    Dataset {
        workspace: PathBuf,
        #[command(subcommand)]
        action: tunebench::dataset_cmd::DatasetCmd,
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

fn main() -> ExitCode {
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
                run_headless(&workspace, input, input_file, &lanes, json).await
            }
            Some(Command::Count { workspace, input, input_file, json, exact }) => {
                count(&workspace, read_input(input, input_file)?, json, exact).await
            }
            Some(Command::Eval { workspace, args }) => eval(&workspace, &args).await,
            Some(Command::Runs { workspace, csv }) => runs(&workspace, csv),
            Some(Command::Dataset { workspace, action }) => tunebench::dataset_cmd::run(&workspace, action),
            Some(Command::Train { workspace, args }) => {
                tokio::task::spawn_blocking(move || tunebench::train_cmd::run(&workspace, &args)).await?
            }
            Some(Command::Pull { model }) => {
                let path = tokio::task::spawn_blocking(move || tunebench::engine::local::pull::pull(&model)).await??;
                println!("{}", path.display());
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Tokenize { model, ids, parse_special, text }) => tokenize(&model, ids, parse_special, &text),
            None => run_tui(cli.workspace, cli.theme).await.map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tunebench: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn eval(path: &Path, args: &tunebench::eval_cmd::EvalArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut stdin = std::io::BufReader::new(std::io::stdin());
    let terminal = std::io::stdin().is_terminal() && err.is_terminal();
    let streams = tunebench::eval_cmd::Streams {
        stdout: &mut out,
        stderr: &mut err,
        confirm: if terminal { Some(&mut stdin) } else { None },
        tty: std::io::stderr().is_terminal(),
    };
    let code = tunebench::eval_cmd::execute(path, args, Registry::builtin(), streams).await?;
    Ok(ExitCode::from(code))
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
    tunebench::runtime::run_tui(state, Registry::builtin()).await
}

async fn run_headless(
    path: &Path,
    input: Option<String>,
    input_file: Option<PathBuf>,
    lanes: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let ws = workspace::load(path)?;
    // The theme is the TUI's, but a broken one is still an error here rather than a surprise later.
    Theme::choose(None, &ws)?;
    let input = read_input(input, input_file)?;
    let chosen = headless::select_lanes(&ws, lanes).map_err(anyhow::Error::msg)?;
    let mut warn = |w: &str| eprintln!("tunebench: warning: {w}");
    let headless::Finished { reports, .. } =
        headless::run_with(&ws, &input, &chosen, Registry::builtin(), &mut warn).await;
    for r in &reports {
        if json {
            println!("{}", r.to_json());
        } else {
            println!("── {} · {} · {} · {}", r.lane, r.prompt_variant, r.model, r.backend);
            if !r.output.is_empty() {
                println!("{}", r.output);
            }
            let f = |v: Option<f64>, unit: &str| v.map_or("—".to_string(), |x| format!("{x}{unit}"));
            println!(
                "in {} · out {} · ttft {} · total {} · {} tok/s · cost {}",
                r.prompt_tokens.map_or("—".into(), |n| n.to_string()),
                r.completion_tokens.map_or("—".into(), |n| n.to_string()),
                f(r.ttft_ms, "ms"),
                f(r.total_ms, "ms"),
                f(r.tokens_per_s, ""),
                f(r.cost_usd, " $"),
            );
            if let Some(e) = &r.error {
                println!("error: {e}");
            }
            println!();
        }
    }
    let failed: Vec<String> =
        reports.iter().filter_map(|r| r.error.as_ref().map(|e| format!("{} ({e})", r.lane))).collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("tunebench: {} of {} lane(s) failed: {}", failed.len(), reports.len(), failed.join("; "));
        Ok(ExitCode::from(1))
    }
}

fn tokenize(model: &Path, show_ids: bool, parse_special: bool, text: &str) -> anyhow::Result<ExitCode> {
    let tok = tunebench::engine::local::tokenizer::Tokenizer::open(model)?;
    let ids = tok.encode(text, parse_special)?;
    println!("{}", ids.len());
    if show_ids {
        println!("{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(input: Option<String>, input_file: Option<PathBuf>) -> anyhow::Result<String> {
    Ok(match (input, input_file) {
        (Some(text), _) => text,
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading the input from standard input")?;
            s
        }
        (None, Some(f)) => {
            std::fs::read_to_string(&f).with_context(|| format!("reading the input file {}", f.display()))?
        }
        (None, None) => bail!("give --input TEXT or --input-file FILE"),
    })
}

/// `tunebench count`: one line per lane; exits 1 when a lane could not be counted.
async fn count(path: &Path, input: String, json: bool, exact: bool) -> anyhow::Result<ExitCode> {
    let ws = workspace::load(path)?;
    let mut counts = tunebench::metrics::Counters::new().count_all(&ws, &input);
    if exact {
        let env = tunebench::engine::api::process_env();
        for (lane, c) in ws.lanes.iter().zip(counts.iter_mut()) {
            if lane.backend == workspace::BackendKind::Anthropic {
                let system = ws.prompt_text(&lane.prompt).unwrap_or_default();
                // Unreachable or refused: keep the ≈ estimate, and say why the exact figure is missing.
                match tunebench::engine::api::count_tokens::anthropic(lane, &env, system, &input).await {
                    Ok(n) => {
                        *c = Ok(tunebench::metrics::Count {
                            tokens: n,
                            estimated: false,
                            how: "count_tokens endpoint".into(),
                        })
                    }
                    Err(e) => eprintln!("tunebench: warning: lane `{}`: {e}; showing the estimate", lane.id),
                }
            }
        }
    }
    let mut failed = false;
    for (lane, c) in ws.lanes.iter().zip(counts) {
        failed |= c.is_err();
        if json {
            let (tokens, estimated, error) = match &c {
                Ok(c) => (Some(c.tokens), c.estimated, None),
                Err(e) => (None, false, Some(e.as_str())),
            };
            #[derive(serde::Serialize)]
            struct Line<'a> {
                lane: &'a str,
                prompt_tokens: Option<u64>,
                estimated: bool,
                error: Option<&'a str>,
            }
            let line = Line { lane: &lane.id, prompt_tokens: tokens, estimated, error };
            println!("{}", serde_json::to_string(&line)?);
        } else {
            match c {
                Ok(c) => println!("{:<16} {:>9}  {}", lane.id, tunebench::metrics::fmt_count(c.tokens), c.how),
                Err(e) => println!("{:<16} {:>9}  {e}", lane.id, "?"),
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `tunebench runs`: lines that are not records are named on stderr, never dropped silently.
fn runs(path: &Path, csv: bool) -> anyhow::Result<ExitCode> {
    use tunebench::metrics::history;
    let ws = workspace::load(path)?;
    let file = ws.runs_path();
    let (records, bad) = history::read(&file).with_context(|| format!("reading {}", file.display()))?;
    for b in &bad {
        eprintln!("tunebench: skipped {b}");
    }
    if csv {
        print!("{}", history::to_csv(&records));
        return Ok(ExitCode::SUCCESS);
    }
    let field = |r: &serde_json::Value, k: &str| match r.get(k) {
        None | Some(serde_json::Value::Null) => "—".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    println!(
        "{:<14} {:<8} {:>7} {:>6} {:>9} {:>9} {:>10}  error",
        "time (unix s)", "lane", "prompt", "out", "ttft ms", "total ms", "cost $"
    );
    for r in &records {
        let secs = r
            .get("time_unix_ms")
            .and_then(serde_json::Value::as_u64)
            .map_or("—".into(), |ms| (ms / 1000).to_string());
        println!(
            "{secs:<14} {:<8} {:>7} {:>6} {:>9} {:>9} {:>10}  {}",
            field(r, "lane"),
            field(r, "prompt_tokens"),
            field(r, "completion_tokens"),
            field(r, "ttft_ms"),
            field(r, "total_ms"),
            field(r, "cost_usd"),
            r.get("error").and_then(|e| e.as_str()).unwrap_or("")
        );
    }
    println!("{} run(s) in {}", records.len(), file.display());
    Ok(ExitCode::SUCCESS)
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
