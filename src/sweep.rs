//! The data-size sweep: one adapter per setting (nested, seeded subsets of the train split × rank × epochs ×
//! learning rate), each trained into its own folder and scored on the test split with the workspace's evals,
//! beside the long-prompt reference lane. Resumable: a finished point's adapter is kept and its answers are in
//! the eval cache; a point cut short continues from its checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::engine::Registry;
use crate::eval::score::LaneScore;
use crate::eval::{Scoreboard, Setup, runner};
use crate::lora::train::job::{Job, Options};
use crate::workspace::{LaneSpec, Workspace};

/// One setting of the sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Train examples (None: all of them).
    pub examples: Option<usize>,
    pub rank: usize,
    pub epochs: usize,
    pub lr: f64,
}

impl Point {
    /// The point's folder name under the sweep's folder: `n100-r16-e3-lr0.0002`.
    pub fn key(&self) -> String {
        let n = self.examples.map_or("all".to_string(), |n| n.to_string());
        format!("n{n}-r{}-e{}-lr{}", self.rank, self.epochs, self.lr)
    }
}

/// What training a point left in its folder (`sweep-point.json`): written once the adapter is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    pub train_examples: usize,
    pub rank: usize,
    pub epochs: usize,
    pub lr: f64,
    pub steps: usize,
    pub valid_loss_best: Option<f64>,
    pub seconds: f64,
}

/// A point's outcome: its training and its lane's scores over the test split.
pub struct Outcome {
    pub point: Point,
    pub dir: PathBuf,
    pub trained: Trained,
    /// Trained in this run (false: found finished in its folder).
    pub fresh: bool,
    pub score: LaneScore,
}

/// Every combination of the settings, in order: examples, then rank, epochs, learning rate.
pub fn grid(examples: &[Option<usize>], ranks: &[usize], epochs: &[usize], lrs: &[f64]) -> Vec<Point> {
    let mut out = Vec::new();
    for &n in examples {
        for &rank in ranks {
            for &e in epochs {
                for &lr in lrs {
                    out.push(Point { examples: n, rank, epochs: e, lr });
                }
            }
        }
    }
    out
}

/// The sweep's folder: `adapters/<the adapter lane's adapter, its versions' name>-sweep`.
pub fn folder(ws: &Workspace) -> anyhow::Result<(LaneSpec, PathBuf)> {
    let lane = ws.adapter_lane().context("no adapter lane: give a local lane an `adapter = \"adapters/NAME\"`")?;
    let name = crate::lora::train::job::versions_name(Path::new(lane.adapter.as_deref().unwrap_or("lora")));
    Ok((lane.clone(), ws.root.join("adapters").join(format!("{name}-sweep"))))
}

/// The lane the curve is compared with: `named`, else the workspace's `[savings] reference`, else the first
/// lane without an adapter (None when every lane has one).
pub fn reference_lane(ws: &Workspace, named: Option<&str>) -> Result<Option<usize>, String> {
    match named.or(ws.savings.reference.as_deref()) {
        Some(id) => ws.lanes.iter().position(|l| l.id == id).map(Some).ok_or_else(|| format!("no lane `{id}`")),
        None => Ok(ws.lanes.iter().position(|l| l.adapter.is_none())),
    }
}

/// Trains `point` into `dir` unless it is finished there (a point cut short resumes from its checkpoint).
/// `base` holds the settings the grid does not vary. Progress lines go to `log`.
pub fn train_point(
    ws: &Workspace,
    base: &Options,
    point: Point,
    seed: u64,
    dir: &Path,
    log: &mut dyn FnMut(String),
) -> anyhow::Result<(Trained, bool)> {
    let marker = dir.join("sweep-point.json");
    if let Ok(text) = std::fs::read_to_string(&marker) {
        let t: Trained = serde_json::from_str(&text).with_context(|| format!("{}", marker.display()))?;
        return Ok((t, false));
    }
    let mut opts = base.clone();
    opts.out_dir = Some(dir.to_path_buf());
    opts.subset = point.examples.map(|n| (n, seed));
    opts.resume = crate::lora::train::save::latest(&dir.join("checkpoints")).is_some();
    opts.config.rank = point.rank;
    opts.config.epochs = point.epochs;
    opts.config.lr = point.lr;
    let mut job = Job::prepare(ws, &opts).map_err(anyhow::Error::msg)?;
    if point.examples.is_some_and(|n| n > job.train.len()) {
        log(format!("{}: only {} train examples", point.key(), job.train.len()));
    }
    log(format!(
        "{}: training on {} examples{}",
        point.key(),
        job.train.len(),
        if opts.resume { " (resumed)" } else { "" }
    ));
    let summary = job.run(&AtomicBool::new(false), &mut |_| {})?;
    if summary.cancelled {
        bail!("{}: training stopped", point.key());
    }
    let t = Trained {
        train_examples: job.train.len(),
        rank: point.rank,
        epochs: point.epochs,
        lr: point.lr,
        steps: summary.steps,
        valid_loss_best: summary.valid_best,
        seconds: summary.seconds,
    };
    crate::workspace::store::write_atomic(&marker, serde_json::to_string_pretty(&t)?.as_bytes())
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok((t, true))
}

/// A workspace with one lane per point (a copy of the adapter lane running that point's adapter), after the
/// workspace's own lanes; returns it and the new lanes' indices.
pub fn with_point_lanes(ws: &Workspace, lane: &LaneSpec, dirs: &[(Point, PathBuf)]) -> (Workspace, Vec<usize>) {
    let mut ws2 = ws.clone();
    let mut idx = Vec::new();
    for (p, dir) in dirs {
        let mut l = lane.clone();
        l.id = format!("sweep {}", p.key());
        let rel = dir.strip_prefix(&ws.root).unwrap_or(dir);
        l.adapter = Some(rel.display().to_string());
        idx.push(ws2.lanes.len());
        ws2.lanes.push(l);
    }
    (ws2, idx)
}

/// Scores `lanes` of `ws` over the test split (cached answers reused, the rest run and cached): the
/// scoreboard. `limit` keeps the first N cases.
pub async fn score(
    ws: &Workspace,
    lanes: Vec<usize>,
    limit: Option<usize>,
    registry: Registry,
    log: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<Scoreboard> {
    let mut setup = Setup::load(ws, lanes, limit)?;
    let plan = setup.plan(false);
    let mut answers: HashMap<(usize, usize), crate::eval::Answer> =
        plan.cached.into_iter().map(|(j, a)| ((j.case, j.lane), a)).collect();
    let total = plan.run.len();
    log(format!("scoring: {} answers cached, {total} to run", answers.len()));
    let limits = runner::limits(ws, &setup.lanes, runner::DEFAULT_API_CONCURRENCY as usize, None);
    let cache = &mut setup.cache;
    let mut done = 0;
    let mut on = |p: runner::Progress| {
        if let runner::Progress::Finished(job, answer) = p {
            done += 1;
            if let Err(e) = cache.put(&answer) {
                log(format!("answer not cached: {e}"));
            }
            answers.insert((job.case, job.lane), *answer);
        }
    };
    runner::run(
        ws,
        &setup.cases,
        &setup.hashes,
        plan.run,
        &limits,
        registry.clone(),
        CancellationToken::new(),
        &mut on,
    )
    .await;
    if done < total {
        bail!("{} of {total} answers did not come back", total - done);
    }
    if setup.evals.all.iter().chain(setup.evals.by_case.values().flatten()).any(|a| a.kind.is_judged()) {
        // A sweep asks nobody: a free judge grades, a paid one waits for `tunebench eval` to be agreed to.
        let mut free = |e: &crate::eval::Estimate| e.calls == 0;
        match crate::eval::judge::grade(ws, &setup.cases, &setup.evals, &mut answers, &setup.cache, registry, &mut free)
            .await
        {
            Ok(g) if g.declined > 0 => log(format!(
                "the judge's {} paid call(s) were not made: its assertions stay ungraded (`tunebench eval` asks for them)",
                g.declined
            )),
            Ok(g) if g.calls > 0 => log(format!("judge: {} call(s), {} without a verdict", g.calls, g.errors)),
            Ok(_) => {}
            Err(e) => log(format!("judge not asked: {e}")),
        }
    }
    Ok(Scoreboard::build(ws, &setup.cases, &setup.evals, &setup.lanes, answers))
}

/// One point of the curve as the eval cache knows it (no run): its setting and its test pass rate.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    pub trained: Trained,
    pub passed: usize,
    /// Test cases with a cached answer (a point not scored yet has none).
    pub cases: usize,
    pub ci95: (f64, f64),
}

/// The sweep's curve from what is on disk: every finished point under the sweep's folder and its cached test
/// answers, and the reference lane's pass rate (what F10 draws; `tunebench sweep` fills the cache).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Curve {
    pub points: Vec<CurvePoint>,
    pub reference: Option<(String, f64)>,
}

pub fn cached_curve(ws: &Workspace) -> Result<Curve, String> {
    let Ok((lane, folder)) = folder(ws) else { return Ok(Curve::default()) };
    let Ok(entries) = std::fs::read_dir(&folder) else { return Ok(Curve::default()) };
    let mut found: Vec<(Point, PathBuf, Trained)> = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        let Ok(text) = std::fs::read_to_string(dir.join("sweep-point.json")) else { continue };
        let t: Trained = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", dir.display()))?;
        let p = Point { examples: Some(t.train_examples), rank: t.rank, epochs: t.epochs, lr: t.lr };
        found.push((p, dir, t));
    }
    found.sort_by_key(|(_, _, t)| (t.train_examples, t.rank, t.epochs));
    let dirs: Vec<(Point, PathBuf)> = found.iter().map(|(p, d, _)| (*p, d.clone())).collect();
    let (ws2, lanes) = with_point_lanes(ws, &lane, &dirs);
    let reference = reference_lane(ws, None)?;
    let mut all = lanes.clone();
    all.extend(reference);
    let board = Setup::load(&ws2, all, None).map_err(|e| e.to_string())?.cached_board(&ws2);
    let score = |i: usize| board.lanes.iter().find(|s| s.idx == i);
    let points = found
        .into_iter()
        .zip(&lanes)
        .map(|((_, _, trained), &i)| {
            let s = score(i);
            CurvePoint {
                trained,
                passed: s.map_or(0, |s| s.passed),
                cases: s.map_or(0, |s| s.cases),
                ci95: s.map_or((0.0, 1.0), LaneScore::ci95),
            }
        })
        .collect();
    let reference = reference.and_then(score).filter(|s| s.cases > 0).map(|s| (s.lane.clone(), s.pass_rate()));
    Ok(Curve { points, reference })
}
