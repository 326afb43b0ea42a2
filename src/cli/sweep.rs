//! `tunebench sweep`: how many examples before fine-tuning pays, on the workspace's own data — one adapter per
//! setting, each scored on the test split, printed as a curve beside the long-prompt reference lane.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::engine::Registry;
use crate::eval::score::LaneScore;
use crate::sweep::{self, Outcome, Point};
use crate::workspace;

#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// Train examples per point, nested (each a prefix of one seeded shuffle; `all` = every example).
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,400,all")]
    pub examples: Vec<String>,
    /// LoRA ranks.
    #[arg(long, value_delimiter = ',', default_value = "16")]
    pub rank: Vec<usize>,
    /// Epochs.
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub epochs: Vec<usize>,
    /// Learning rates.
    #[arg(long, value_delimiter = ',', default_value = "2e-4")]
    pub lr: Vec<f64>,
    /// Seed of the subsets' shuffle and of training.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// At most this many optimizer steps per point (a quick look; the curve then says little).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_steps: Option<u64>,
    /// Only the first N test cases.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// The reference lane (default: the workspace's `[savings] reference`, else the first lane without an adapter).
    #[arg(long)]
    pub reference: Option<String>,
    /// One JSON object per point (and one for the reference), one per line.
    #[arg(long)]
    pub json: bool,
}

fn points(args: &SweepArgs) -> anyhow::Result<Vec<Point>> {
    let mut examples = Vec::new();
    for e in &args.examples {
        examples.push(match e.trim() {
            "all" => None,
            n => match n.parse::<usize>() {
                Ok(0) | Err(_) => bail!("--examples `{n}`: a count of at least 1, or `all`"),
                Ok(n) => Some(n),
            },
        });
    }
    if let Some(r) = args.rank.iter().find(|&&r| r == 0) {
        bail!("--rank {r}: must be at least 1");
    }
    if let Some(e) = args.epochs.iter().find(|&&e| e == 0) {
        bail!("--epochs {e}: must be at least 1");
    }
    if let Some(lr) = args.lr.iter().find(|lr| !(lr.is_finite() && **lr > 0.0)) {
        bail!("--lr {lr}: must be a number > 0");
    }
    Ok(sweep::grid(&examples, &args.rank, &args.epochs, &args.lr))
}

pub async fn run(path: &Path, args: &SweepArgs, registry: Registry) -> anyhow::Result<ExitCode> {
    let points = points(args)?;
    let ws = workspace::load(path)?;
    let (lane, folder) = sweep::folder(&ws)?;
    let reference = sweep::reference_lane(&ws, args.reference.as_deref()).map_err(anyhow::Error::msg)?;
    if let Some(r) = reference.filter(|&r| crate::eval::is_paid(&ws.lanes[r])) {
        bail!(
            "the reference lane `{}` makes paid calls: score it with `tunebench eval` and name a local one",
            ws.lanes[r].id
        );
    }
    let mut base = crate::cli::train::default_options();
    base.config.seed = args.seed;
    base.config.max_steps = args.max_steps.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut log = |s: String| eprintln!("sweep: {s}");
    let mut trained = Vec::new();
    for p in &points {
        let dir = folder.join(p.key());
        let (ws2, p2, base2, dir2) = (ws.clone(), *p, base.clone(), dir.clone());
        let (t, fresh) = tokio::task::spawn_blocking(move || {
            sweep::train_point(&ws2, &base2, p2, base2.config.seed, &dir2, &mut |s| eprintln!("sweep: {s}"))
        })
        .await??;
        trained.push((*p, dir, t, fresh));
    }
    let dirs: Vec<_> = trained.iter().map(|(p, d, ..)| (*p, d.clone())).collect();
    let (ws2, lanes) = sweep::with_point_lanes(&ws, &lane, &dirs);
    let mut scored = lanes.clone();
    scored.extend(reference);
    let limit = args.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let board = sweep::score(&ws2, scored, limit, registry, &mut log).await?;
    let by_lane = |i: usize| board.lanes.iter().find(|s| s.idx == i).cloned();
    let mut outcomes = Vec::new();
    for ((p, dir, t, fresh), i) in trained.into_iter().zip(&lanes) {
        let score = by_lane(*i).context("a point without a score")?;
        outcomes.push(Outcome { point: p, dir, trained: t, fresh, score });
    }
    let reference = reference.and_then(by_lane);
    let mut out = std::io::stdout();
    if args.json {
        for o in &outcomes {
            writeln!(out, "{}", point_json(&ws.root, o))?;
        }
        if let Some(r) = &reference {
            writeln!(
                out,
                "{}",
                serde_json::json!({"reference": r.lane, "pass_rate": r.pass_rate(), "pass_rate_ci95": r.ci95(), "cases": r.cases, "assertions": rates(r)})
            )?;
        }
    } else {
        write!(out, "{}", table(&outcomes, reference.as_ref()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn rates(s: &LaneScore) -> serde_json::Map<String, serde_json::Value> {
    s.assertions.iter().map(|a| (a.name.clone(), serde_json::json!(a.passed as f64 / a.total.max(1) as f64))).collect()
}

fn point_json(root: &Path, o: &Outcome) -> serde_json::Value {
    let s = &o.score;
    serde_json::json!({
        "examples": o.trained.train_examples,
        "rank": o.point.rank,
        "epochs": o.point.epochs,
        "lr": o.point.lr,
        "steps": o.trained.steps,
        "valid_loss_best": o.trained.valid_loss_best,
        "train_seconds": o.trained.seconds,
        "trained_now": o.fresh,
        "cases": s.cases,
        "passed": s.passed,
        "pass_rate": s.pass_rate(),
        "pass_rate_ci95": s.ci95(),
        "assertions": rates(s),
        "adapter": o.dir.strip_prefix(root).unwrap_or(&o.dir),
    })
}

/// The curve as a table: a row per point (pass rate with its Wilson interval, each assertion's rate, the
/// validation loss that picks settings), the reference lane last; the point with the lowest validation loss
/// is marked (settings are chosen on valid, never on test).
pub fn table(outcomes: &[Outcome], reference: Option<&LaneScore>) -> String {
    let names: Vec<String> =
        outcomes.first().map(|o| o.score.assertions.iter().map(|a| a.name.clone()).collect()).unwrap_or_default();
    let best = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.trained.valid_loss_best.map(|v| (i, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i);
    let mut head: Vec<String> = ["examples", "rank", "epochs", "lr", "valid loss", "pass", "rate (95% CI)"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    head.extend(names.iter().cloned());
    let cells = |s: &LaneScore| -> Vec<String> {
        let (lo, hi) = s.ci95();
        let mut c = vec![
            format!("{}/{}", s.passed, s.cases),
            format!("{:.0}% ({:.0}–{:.0}%)", s.pass_rate() * 100.0, lo * 100.0, hi * 100.0),
        ];
        for n in &names {
            c.push(
                s.assertions
                    .iter()
                    .find(|a| &a.name == n)
                    .map_or("–".into(), |a| format!("{}/{}", a.passed, a.total)),
            );
        }
        c
    };
    let mut rows = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        let mut r = vec![
            format!("{}{}", o.trained.train_examples, if Some(i) == best { " *" } else { "" }),
            o.point.rank.to_string(),
            o.point.epochs.to_string(),
            format!("{:e}", o.point.lr),
            o.trained.valid_loss_best.map_or("–".into(), |v| format!("{v:.4}")),
        ];
        r.extend(cells(&o.score));
        rows.push(r);
    }
    if let Some(s) = reference {
        let mut r = vec![format!("reference `{}`", s.lane), String::new(), String::new(), String::new(), String::new()];
        r.extend(cells(s));
        rows.push(r);
    }
    let head_refs: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut out: String = crate::eval::report::align(&head_refs, &rows).join("\n");
    out.push_str(
        "\n* lowest validation loss (settings are chosen on valid; the test rates are reported, not used to pick)\n",
    );
    out
}
