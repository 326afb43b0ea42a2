//! `tunebench eval`: every test case through the chosen lanes, with a progress bar, the paid-call
//! confirmation, the cache, the scoreboard (text or `--json` lines), reports and the `--fail-under` gate.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::engine::Registry;
use crate::eval::runner::{self, Progress};
use crate::eval::{Estimate, Scoreboard, Select, Setup, report};
use crate::workspace;

#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Comma-separated lane ids (default: every lane).
    #[arg(long, value_delimiter = ',')]
    pub lanes: Vec<String>,
    /// Only the first N test cases (of those --tag keeps).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Only the test cases whose example carries this tag (`meta.tags`), e.g. a frozen subset.
    #[arg(long)]
    pub tag: Option<String>,
    /// Requests in flight per API lane without its own `concurrency` key.
    #[arg(long, default_value_t = runner::DEFAULT_API_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Local runs in flight per device, run as one batched pass (default: 4). Their ttft and latency are then
    /// shared figures, marked as such.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16), conflicts_with = "clean_timing")]
    pub batch: Option<u32>,
    /// One local run at a time, so that every ttft and latency is the run's own (as `--batch 1`).
    #[arg(long)]
    pub clean_timing: bool,
    /// One JSON object per lane, one per line.
    #[arg(long)]
    pub json: bool,
    /// Write a report: .md (Markdown), .csv or .jsonl (one line per case and lane).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit 1 when a lane's pass rate is below this (0 to 1).
    #[arg(long)]
    pub fail_under: Option<f64>,
    /// Run paid API calls without asking.
    #[arg(long)]
    pub yes: bool,
    /// Run every case N times (repeat i samples with seed + i), with the pass rate's spread across repeats:
    /// for lanes that sample (temperature > 0). Each repeat is cached on its own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Run every case again, ignoring cached answers (fresh timings).
    #[arg(long)]
    pub fresh: bool,
    /// Instead of scoring lanes: how often the judge agrees with people on the answers they judged (examples
    /// rated 1–5 when promoted, 4–5 a pass; test answers chosen in F9), per llm-rubric / g-eval assertion.
    #[arg(long, conflicts_with_all = ["lanes", "repeat", "fresh", "fail_under", "out"])]
    pub calibrate: bool,
}

/// Where the command talks: `confirm` is None when there is no terminal to ask on.
pub struct Streams<'a> {
    pub stdout: &'a mut (dyn Write + Send),
    pub stderr: &'a mut (dyn Write + Send),
    pub confirm: Option<&'a mut (dyn BufRead + Send)>,
    /// Redraw one progress line (a terminal) rather than print progress lines.
    pub tty: bool,
}

#[derive(Clone, Copy)]
enum Format {
    Markdown,
    Csv,
    Jsonl,
}

fn format_of(path: &Path) -> anyhow::Result<Format> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("md" | "markdown") => Ok(Format::Markdown),
        Some("csv") => Ok(Format::Csv),
        Some("jsonl") => Ok(Format::Jsonl),
        _ => bail!("--out {}: the report format comes from the extension: .md, .csv or .jsonl", path.display()),
    }
}

/// Runs the eval; the exit code is 0, or 1 when a lane is below `--fail-under`. Errors (bad input, a refused
/// confirmation) come back as `Err` and exit 2.
pub async fn execute(path: &Path, args: &EvalArgs, registry: Registry, io: Streams<'_>) -> anyhow::Result<u8> {
    let Streams { stdout, stderr, mut confirm, tty } = io;
    if let Some(f) = args.fail_under
        && !(0.0..=1.0).contains(&f)
    {
        bail!("--fail-under {f}: give a pass rate from 0 to 1 (0.8 is 80%)");
    }
    let format = args.out.as_deref().map(format_of).transpose()?;
    let ws = workspace::load(path)?;
    if args.calibrate {
        return calibrate(&ws, args, registry, Streams { stdout, stderr, confirm, tty }).await;
    }
    let lanes = crate::cli::headless::select_lanes(&ws, &args.lanes).map_err(anyhow::Error::msg)?;
    let limit = args.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let select = Select { limit, tag: args.tag.as_deref() };
    let asked = lanes.clone();
    let mut setup = Setup::load_repeated(&ws, lanes, select, args.repeat as usize)?;
    if !args.lanes.is_empty()
        && let Some(&j) = asked.iter().find(|l| !setup.lanes.contains(l))
    {
        bail!("lane `{}` is evals.toml's judge: it grades the others and is never scored itself", ws.lanes[j].id);
    }
    if args.repeat > 1 {
        // Greedy lanes answer the same way every time: their repeats only cost time (and money on an API).
        let greedy: Vec<&str> = setup
            .lanes
            .iter()
            .map(|&l| &ws.lanes[l])
            .filter(|l| l.sampling.temperature <= 0.0)
            .map(|l| l.id.as_str())
            .collect();
        if !greedy.is_empty() {
            writeln!(
                stderr,
                "tunebench: note: lane(s) {} sample greedily (temperature 0): their repeats should agree",
                greedy.join(", ")
            )?;
        }
    }
    if setup.cache.skipped > 0 {
        writeln!(
            stderr,
            "tunebench: warning: {} unreadable line(s) in {} ignored",
            setup.cache.skipped,
            setup.cache.path.display()
        )?;
    }
    let plan = setup.plan(args.fresh);
    let estimate = Estimate::of(&ws, &setup.cases, &plan.run);
    confirm_paid(&estimate, args.yes, &mut confirm, stderr)?;
    writeln!(
        stderr,
        "eval: {} case(s){} × {} lane(s): {} cached, {} to run",
        setup.cases.len() / args.repeat.max(1) as usize,
        if args.repeat > 1 { format!(" × {} repeats", args.repeat) } else { String::new() },
        setup.lanes.len(),
        plan.cached.len(),
        plan.run.len()
    )?;
    let mut answers: HashMap<(usize, usize), crate::eval::Answer> =
        plan.cached.into_iter().map(|(j, a)| ((j.case, j.lane), a)).collect();
    let total = plan.run.len();
    let batch = if args.clean_timing { Some(1) } else { args.batch.map(|b| b as usize) };
    let limits = runner::limits(&ws, &setup.lanes, args.concurrency as usize, batch);
    let started = Instant::now();
    let (mut done, mut errors) = (0usize, 0usize);
    let every = (total / 10).max(1);
    let cache = &mut setup.cache;
    let cases = &setup.cases;
    let mut on = |p: Progress| match p {
        Progress::Started(_) => {}
        Progress::Warning(w) => {
            let w = crate::visible::escape_line(&w);
            let _ = writeln!(stderr, "{}tunebench: warning: {w}", if tty { "\r\x1b[2K" } else { "" });
        }
        Progress::Finished(job, answer) => {
            done += 1;
            if let Some(e) = &answer.error {
                errors += 1;
                let _ = writeln!(
                    stderr,
                    "{}case {} · lane {}: {}",
                    if tty { "\r\x1b[2K" } else { "" },
                    cases[job.case].id,
                    answer.lane,
                    crate::visible::escape_line(e)
                );
            }
            if let Err(e) = cache.put(&answer) {
                let _ = writeln!(stderr, "tunebench: warning: answer not cached: {e}");
            }
            answers.insert((job.case, job.lane), *answer);
            let line = progress_line(done, total, errors, started);
            let _ = if tty {
                write!(stderr, "\r\x1b[2K{line}").and_then(|()| stderr.flush())
            } else if done % every == 0 || done == total {
                writeln!(stderr, "{line}")
            } else {
                Ok(())
            };
        }
    };
    runner::run(&ws, cases, &setup.hashes, plan.run, &limits, registry.clone(), CancellationToken::new(), &mut on)
        .await;
    if tty && total > 0 {
        writeln!(stderr)?;
    }
    if setup.evals.all.iter().chain(setup.evals.by_case.values().flatten()).any(|a| a.kind.is_judged()) {
        let mut consent = Consent::new(args.yes, &mut confirm, &mut *stderr);
        let grading = crate::eval::judge::grade(
            &ws,
            &setup.cases,
            &setup.evals,
            &mut answers,
            &setup.cache,
            registry,
            &mut |e| consent.ask(e),
        )
        .await
        .map_err(anyhow::Error::msg)?;
        consent.done("the judge's calls (the lanes' answers are cached; rerun to grade them)")?;
        if grading.calls > 0 {
            writeln!(stderr, "judge: {} call(s), {} without a well-formed verdict", grading.calls, grading.errors)?;
        }
    }
    let board = Scoreboard::build(&ws, &setup.cases, &setup.evals, &setup.lanes, answers);
    if args.json {
        for s in &board.lanes {
            writeln!(stdout, "{}", crate::visible::json(report::lane_json(s)))?;
        }
    } else {
        write!(stdout, "{}", report::text(&board))?;
    }
    if let (Some(out), Some(format)) = (&args.out, format) {
        let title = format!("tunebench eval · {}", ws.name);
        let body = match format {
            Format::Markdown => report::markdown(&board, &setup.cases, &title),
            Format::Csv => report::csv(&board, &setup.cases),
            Format::Jsonl => report::case_lines(&board, &setup.cases),
        };
        workspace::store::write_atomic(out, body.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
        writeln!(stderr, "report: {}", out.display())?;
    }
    let mut code = 0;
    if let Some(f) = args.fail_under {
        for s in board.lanes.iter().filter(|s| s.pass_rate() < f) {
            writeln!(stderr, "lane `{}`: pass rate {:.3} is below --fail-under {f}", s.lane, s.pass_rate())?;
            code = 1;
        }
    }
    Ok(code)
}

/// `eval --calibrate`: the judge's agreement with people, per judge assertion.
async fn calibrate(
    ws: &workspace::Workspace,
    args: &EvalArgs,
    registry: Registry,
    io: Streams<'_>,
) -> anyhow::Result<u8> {
    use crate::eval::judge::calibrate::{calibrate, labeled};
    let Streams { stdout, stderr, mut confirm, .. } = io;
    let cases = crate::eval::load_cases(ws).unwrap_or_default();
    let evals = crate::eval::Evals::load(&ws.root, &cases)?;
    crate::eval::judge::judge_lanes(ws, &evals).map_err(anyhow::Error::msg)?;
    let ds = crate::dataset::Dataset::load(&ws.dataset_dir())?;
    let items = labeled(&ds);
    let mut consent = Consent::new(args.yes, &mut confirm, &mut *stderr);
    let (rows, grading) =
        calibrate(ws, &evals, &items, registry, &mut |e| consent.ask(e)).await.map_err(anyhow::Error::msg)?;
    consent.done("the judge's calls")?;
    let rated = items.iter().filter(|x| x.rating.is_some()).count();
    writeln!(
        stdout,
        "judge calibration: {} answer(s) people judged ({rated} rated 1–5, 4–5 a pass; {} chosen in F9 as expected); \
         {} judge call(s) made now",
        items.len(),
        items.len() - rated,
        grading.calls
    )?;
    let head = ["assertion", "agree", "accuracy (95% CI)", "Spearman ρ vs rating", "errors"];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (lo, hi) = r.ci95();
            vec![
                r.assertion.clone(),
                format!("{}/{}", r.agree, r.n),
                format!("{:.0}% ({:.0}–{:.0}%)", r.accuracy() * 100.0, lo * 100.0, hi * 100.0),
                r.spearman.map_or_else(|| format!("– (n={})", r.rated), |s| format!("{s:.2} (n={})", r.rated)),
                r.errors.to_string(),
            ]
        })
        .collect();
    for line in report::align(&head, &body) {
        writeln!(stdout, "{line}")?;
    }
    Ok(0)
}

/// Asks before paid calls (the estimate first); refused without a terminal unless `yes`.
pub(super) fn confirm_paid<'a>(
    estimate: &Estimate,
    yes: bool,
    confirm: &mut Option<&'a mut (dyn BufRead + Send + 'a)>,
    stderr: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    if estimate.calls == 0 || yes {
        return Ok(());
    }
    let Some(input) = confirm.as_mut() else {
        bail!("{}; not confirmed: no terminal to ask on (pass --yes to run them)", estimate.describe());
    };
    write!(stderr, "{}. Proceed? [y/N] ", estimate.describe())?;
    stderr.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        bail!("not confirmed: no paid calls were made");
    }
    Ok(())
}

/// Paid calls confirmed when asked for (see `confirm_paid`), a refusal kept for the caller to stop with.
pub(super) struct Consent<'s, 'a> {
    yes: bool,
    confirm: &'s mut Option<&'a mut (dyn BufRead + Send + 'a)>,
    stderr: &'s mut (dyn Write + Send),
    refused: Option<anyhow::Error>,
}

impl<'s, 'a> Consent<'s, 'a> {
    pub(super) fn new(
        yes: bool,
        confirm: &'s mut Option<&'a mut (dyn BufRead + Send + 'a)>,
        stderr: &'s mut (dyn Write + Send),
    ) -> Self {
        Self { yes, confirm, stderr, refused: None }
    }

    pub(super) fn ask(&mut self, estimate: &Estimate) -> bool {
        match confirm_paid(estimate, self.yes, self.confirm, self.stderr) {
            Ok(()) => true,
            Err(e) => {
                self.refused = Some(e);
                false
            }
        }
    }

    /// The refusal, if there was one, as the error that stops the command (`what` says whose calls).
    pub(super) fn done(self, what: &'static str) -> anyhow::Result<()> {
        self.refused.map_or(Ok(()), |e| Err(e.context(what)))
    }
}

/// The progress line of a run of `total` calls: bar, counts, time and ETA.
pub(super) fn progress_line(done: usize, total: usize, errors: usize, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    let eta = secs / done.max(1) as f64 * total.saturating_sub(done) as f64;
    format!(
        "{} {done}/{total} runs · {errors} run error(s) · {secs:.1}s · ETA {}",
        crate::cli::train::bar(done, total),
        crate::cli::train::eta(eta)
    )
}

/// A command on the real terminal: paid calls are confirmed only when a person can answer, progress redraws
/// one line when stderr is a terminal.
pub(super) async fn on_terminal(
    run: impl for<'x> AsyncFnOnce(Streams<'x>) -> anyhow::Result<u8>,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut stdin = std::io::BufReader::new(std::io::stdin());
    let terminal = std::io::stdin().is_terminal() && err.is_terminal();
    let streams = Streams {
        stdout: &mut out,
        stderr: &mut err,
        confirm: if terminal { Some(&mut stdin) } else { None },
        tty: std::io::stderr().is_terminal(),
    };
    Ok(ExitCode::from(run(streams).await?))
}

/// `tunebench eval` on the real terminal.
pub(super) async fn main(path: &Path, args: &EvalArgs) -> anyhow::Result<ExitCode> {
    on_terminal(async |io| execute(path, args, Registry::builtin(), io).await).await
}
