//! `tunebench distill`: a teacher lane answers unlabeled inputs; what passes the filter is kept as training
//! examples (paid calls confirmed first, progress with ETA, resumable through the eval cache, a summary).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::eval::{Consent, Streams, confirm_paid, progress_line};
use crate::dataset::{Dataset, Split};
use crate::distill::{self, Filter, Teacher};
use crate::engine::Registry;
use crate::eval::runner::{self, Progress};
use crate::eval::{Answer, Cache, Estimate, Evals, lane_hash};
use crate::workspace::{self, Workspace};

#[derive(clap::Args, Debug, Clone)]
pub struct DistillArgs {
    /// The lane that answers (usually the long prompt on the big model); its prompt and backend are used.
    #[arg(long)]
    pub teacher: String,
    /// A folder of .txt files (one input each), a text file (one input per line), or a .jsonl of
    /// {"input": …} or chat records (the first user turn).
    #[arg(long, required_unless_present = "generate", conflicts_with = "generate")]
    pub inputs: Option<PathBuf>,
    /// Instead of --inputs: the teacher first writes N new inputs in the style and spread of the seed inputs
    /// (near duplicates of each other, of every split and of the prompts' worked examples rejected).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub generate: Option<u64>,
    /// The inputs --generate imitates (any --inputs format; default: the train split's inputs).
    #[arg(long, requires = "generate")]
    pub seed_inputs: Option<PathBuf>,
    /// Answer at most N inputs (of those not already in the dataset).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// The split kept answers go to.
    #[arg(long, default_value = "train", value_parser = ["train", "valid", "test"])]
    pub split: String,
    /// Which answers are kept: `evals` (evals.toml's assertions that need no expected answer), `judge` (its
    /// llm-rubric and g-eval assertions, graded by the judge lane) or `none` (every finished answer).
    #[arg(long, value_enum, default_value_t = Filter::Evals)]
    pub filter: Filter,
    /// Requests in flight for an API teacher without its own `concurrency` key.
    #[arg(long, default_value_t = runner::DEFAULT_API_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Stop before the paid calls could cost more than this many dollars (by the estimate's upper bound:
    /// only as many inputs as fit are answered, the rest wait for a later run; with --generate, its calls
    /// come out of it first).
    #[arg(long)]
    pub max_cost: Option<f64>,
    /// Run paid API calls without asking.
    #[arg(long)]
    pub yes: bool,
}

/// Runs the distillation; 0, or 1 when some teacher runs failed (a rerun retries them). Bad input and a
/// refused confirmation come back as `Err` (exit 2).
pub async fn execute(path: &Path, args: &DistillArgs, registry: Registry, io: Streams<'_>) -> anyhow::Result<u8> {
    let Streams { stdout, stderr, mut confirm, tty } = io;
    if let Some(m) = args.max_cost.filter(|m| !(m.is_finite() && *m >= 0.0)) {
        bail!("--max-cost {m}: give dollars, 0 or more");
    }
    let ws = workspace::load(path)?;
    let teacher =
        crate::cli::headless::select_lanes(&ws, std::slice::from_ref(&args.teacher)).map_err(anyhow::Error::msg)?[0];
    let split = Split::parse(&args.split).context("--split: train, valid or test")?;
    let dir = ws.dataset_dir();
    let ds = Dataset::load(&dir)?;
    let mut skipped = Vec::new();
    // With --generate, what its calls may have cost comes out of --max-cost before the answers.
    let mut generation_bound = 0.0;
    let inputs = match (&args.inputs, args.generate) {
        (Some(p), _) => distill::inputs::read(p)?,
        (None, Some(n)) => {
            let seeds = distill::generate::seeds(&ds, args.seed_inputs.as_deref())?;
            let mut consent = Consent::new(args.yes, &mut confirm, &mut *stderr);
            let cap = args.max_cost;
            let made =
                distill::generate::generate(&ws, teacher, n as usize, &seeds, &ds, registry.clone(), cap, &mut |e| {
                    consent.ask(e)
                })
                .await;
            consent.done("writing new inputs")?;
            let made = made?;
            writeln!(
                stderr,
                "distill: the teacher wrote {} new input(s) in {} call(s) ({} rejected as near duplicates or worked examples{})",
                made.inputs.len(),
                made.calls,
                made.skipped.len(),
                if made.failed.is_empty() { String::new() } else { format!("; {}", made.failed.join("; ")) }
            )?;
            skipped = made.skipped;
            generation_bound = made.bound_usd;
            made.inputs
        }
        (None, None) => bail!("give --inputs PATH or --generate N"),
    };
    let read = inputs.len() + skipped.len();
    let (mut fresh, more) = distill::screen(&ds, inputs);
    skipped.extend(more);
    if let Some(n) = args.limit {
        fresh.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let cases_for_ids = crate::eval::load_cases(&ws).unwrap_or_default();
    let evals = Evals::load(&ws.root, &cases_for_ids)?;
    let (checks, unused) = match args.filter {
        Filter::Judge => distill::judge_checks(&evals.all),
        _ => distill::answer_checks(&evals.all),
    };
    let file = evals.file.as_ref().map_or_else(|| ws.root.join(crate::eval::EVALS_FILE), PathBuf::clone);
    match args.filter {
        Filter::Evals if checks.is_empty() => bail!(
            "--filter evals: {} has no assertion that judges an answer alone (json-schema, is-json, regex, contains, \
             not-contains, equals with a value, max-latency/max-cost/max-prompt-tokens); add one, or pass --filter none \
             to keep every answer",
            file.display()
        ),
        Filter::Judge if checks.is_empty() => bail!(
            "--filter judge: {} has no llm-rubric or g-eval assertion (with a [judge] lane) to grade the answers by",
            file.display()
        ),
        _ => {}
    }
    if args.filter == Filter::Judge {
        crate::eval::judge::judge_lanes(&ws, &evals).map_err(anyhow::Error::msg)?;
    }
    let lane = &ws.lanes[teacher];
    let hash = lane_hash(&ws, lane);
    let mut hashes = vec![String::new(); ws.lanes.len()];
    hashes[teacher] = hash.clone();
    let mut cases: Vec<_> = fresh.iter().enumerate().map(|(i, x)| distill::case_of(i, x)).collect();
    let mut cache = Cache::load(&ws.root)?;
    let mut plan = runner::plan(&cases, &[teacher], &hashes, &cache, false);
    let mut estimate = Estimate::of(&ws, &cases, &plan.run);
    let mut held_back = 0;
    if let Some(cap) = args.max_cost.map(|c| (c - generation_bound).max(0.0)) {
        while !plan.run.is_empty() && estimate.prompt_usd + estimate.completion_max_usd > cap {
            plan.run.pop();
            held_back += 1;
            estimate = Estimate::of(&ws, &cases, &plan.run);
        }
        if held_back > 0 {
            let last = plan.run.iter().map(|j| j.case).max().map_or(0, |c| c + 1).max(plan.cached.len());
            fresh.truncate(last);
            cases.truncate(last);
            plan = runner::plan(&cases, &[teacher], &hashes, &cache, false);
            writeln!(stderr, "distill: --max-cost ${cap}: {held_back} input(s) held back for a later run")?;
        }
    }
    confirm_paid(&estimate, args.yes, &mut confirm, stderr)?;
    writeln!(
        stderr,
        "distill: {read} input(s) read, {} already in the dataset or repeated; teacher `{}` answers {}: {} cached, {} to run",
        skipped.len(),
        lane.id,
        cases.len(),
        plan.cached.len(),
        plan.run.len()
    )?;
    let mut answers: HashMap<usize, Answer> = plan.cached.into_iter().map(|(j, a)| (j.case, a)).collect();
    let total = plan.run.len();
    let limits = runner::limits(&ws, &[teacher], args.concurrency as usize, None);
    let (started, mut done, mut errors, mut spent, mut unpriced) = (Instant::now(), 0usize, 0usize, 0.0f64, false);
    let mut on = |p: Progress| match p {
        Progress::Started(_) => {}
        Progress::Warning(w) => {
            let _ = writeln!(
                stderr,
                "{}tunebench: warning: {}",
                if tty { "\r\x1b[2K" } else { "" },
                crate::visible::escape_line(&w)
            );
        }
        Progress::Finished(job, answer) => {
            done += 1;
            errors += usize::from(answer.error.is_some());
            match answer.cost_usd(&ws, &ws.lanes[job.lane]) {
                Some(c) => spent += c,
                None => unpriced |= answer.error.is_none(),
            }
            if let Err(e) = cache.put(&answer) {
                let _ = writeln!(stderr, "tunebench: warning: answer not cached: {e}");
            }
            answers.insert(job.case, *answer);
            let line = progress_line(done, total, errors, started);
            let _ = if tty {
                write!(stderr, "\r\x1b[2K{line}").and_then(|()| stderr.flush())
            } else if done % (total / 10).max(1) == 0 || done == total {
                writeln!(stderr, "{line}")
            } else {
                Ok(())
            };
        }
    };
    runner::run(&ws, &cases, &hashes, plan.run, &limits, registry.clone(), CancellationToken::new(), &mut on).await;
    if tty && total > 0 {
        writeln!(stderr)?;
    }
    if args.filter == Filter::Judge {
        let judged = Evals {
            all: checks.clone(),
            by_case: Default::default(),
            file: evals.file.clone(),
            judge: evals.judge.clone(),
        };
        let mut keyed: HashMap<(usize, usize), Answer> = answers.drain().map(|(c, a)| ((c, teacher), a)).collect();
        let mut consent = Consent::new(args.yes, &mut confirm, &mut *stderr);
        let grading =
            crate::eval::judge::grade(&ws, &cases, &judged, &mut keyed, &cache, registry, &mut |e| consent.ask(e))
                .await
                .map_err(anyhow::Error::msg)?;
        consent.done("the judge's calls (the teacher's answers are cached; rerun to grade them)")?;
        if grading.calls > 0 {
            writeln!(stderr, "judge: {} call(s), {} without a well-formed verdict", grading.calls, grading.errors)?;
        }
        answers = keyed.into_iter().map(|((c, _), a)| (c, a)).collect();
    }
    let mut outcome = distill::sort(&ws, &Teacher::new(&ws, lane, &hash), args.filter, &checks, &fresh, &mut answers)?;
    let mut ds = ds;
    distill::keep_rejected(&ds, &dir, std::mem::take(&mut outcome.keep_aside))?;
    let (ids, refused) = ds.append_all(split, outcome.kept.iter().map(|(_, x)| x.clone()).collect())?;
    let ran_now = total;
    summary(
        stdout,
        &ws,
        &Report {
            read,
            skipped: &skipped,
            outcome: &outcome,
            ids: &ids,
            refused: &refused,
            split,
            ran_now,
            spent: (!unpriced).then_some(spent),
            unused: &unused,
            filter: args.filter,
        },
    )?;
    Ok(u8::from(!outcome.failed.is_empty()))
}

struct Report<'a> {
    read: usize,
    skipped: &'a [distill::Skipped],
    outcome: &'a distill::Outcome,
    ids: &'a [String],
    refused: &'a [String],
    split: Split,
    ran_now: usize,
    /// What the calls made now cost (None: the teacher has no known price).
    spent: Option<f64>,
    unused: &'a [String],
    filter: Filter,
}

fn summary(out: &mut (dyn Write + Send), ws: &Workspace, r: &Report<'_>) -> anyhow::Result<()> {
    let esc = crate::visible::escape_line;
    let o = r.outcome;
    let dir = ws.dataset_dir();
    writeln!(
        out,
        "kept {} → {}{}",
        r.ids.len(),
        dir.join(r.split.file_name()).display(),
        if r.ids.is_empty() { String::new() } else { format!(" ({})", r.ids.join(", ")) }
    )?;
    for why in r.refused {
        writeln!(out, "  {}", esc(why))?;
    }
    let again = if o.rejected_before > 0 {
        format!(", {} of them kept there by an earlier run", o.rejected_before)
    } else {
        String::new()
    };
    writeln!(out, "rejected {} → {}{again}", o.rejected.len(), dir.join(distill::REJECTED_FILE).display())?;
    for (input, why) in &o.rejected {
        writeln!(out, "  {}: {}", esc(&input.origin), esc(why))?;
    }
    writeln!(
        out,
        "skipped {} (already in the dataset, or given twice: never answered, so nothing leaks)",
        r.skipped.len()
    )?;
    for s in r.skipped {
        writeln!(out, "  {}: {}", esc(&s.input.origin), esc(&s.why))?;
    }
    if !o.failed.is_empty() {
        writeln!(out, "failed {} (not kept; a rerun asks again)", o.failed.len())?;
        for (input, why) in &o.failed {
            writeln!(out, "  {}: {}", esc(&input.origin), esc(why))?;
        }
    }
    if r.filter != Filter::None && !r.unused.is_empty() {
        writeln!(out, "not applied (they need an expected answer or a reference lane): {}", r.unused.join(", "))?;
    }
    writeln!(
        out,
        "cost: {} for {} call(s) made now; {} answer(s) read from the cache ({} input(s) read)",
        r.spent.map_or_else(
            || "unknown (no price for the teacher's model: add [pricing.\"model\"])".into(),
            |s| crate::metrics::format::fmt_usd(Some(s))
        ),
        r.ran_now,
        (o.kept.len() + o.rejected.len() + o.failed.len()).saturating_sub(r.ran_now),
        r.read
    )?;
    Ok(())
}

/// `tunebench distill` on the real terminal.
pub(super) async fn main(path: &Path, args: &DistillArgs) -> anyhow::Result<ExitCode> {
    super::eval::on_terminal(async |io| execute(path, args, Registry::builtin(), io).await).await
}
