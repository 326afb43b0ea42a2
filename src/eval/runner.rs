//! Runs every (case, lane) pair not already cached: each lane with its own limit of runs in flight.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Answer, Cache, Case};
use crate::engine::{Engine, EventKind, LaneIdx, Registry, RunRequest};
use crate::workspace::Workspace;

/// One lane answering one case (indices into the case list and the workspace's lanes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub case: usize,
    pub lane: LaneIdx,
}

/// What an eval will do: the pairs to run, and the answers the cache already holds.
#[derive(Debug, Default)]
pub struct Plan {
    pub run: Vec<Job>,
    pub cached: Vec<(Job, Answer)>,
}

/// Splits the pairs into cached and to-run; `fresh` runs everything again. Jobs go case by case so that an
/// interrupted eval has compared lanes on the same cases.
pub fn plan(cases: &[Case], lanes: &[LaneIdx], hashes: &[String], cache: &Cache, fresh: bool) -> Plan {
    let mut p = Plan::default();
    for (ci, case) in cases.iter().enumerate() {
        for &lane in lanes {
            let job = Job { case: ci, lane };
            match cache.get(&hashes[lane], &case.hash).filter(|_| !fresh) {
                Some(a) => p.cached.push((job, a.clone())),
                None => p.run.push(job),
            }
        }
    }
    p
}

/// Requests in flight on an API lane without its own `concurrency` key (`eval --concurrency` changes it).
pub const DEFAULT_API_CONCURRENCY: u32 = 4;

/// Lanes that share a limit on runs in flight, and that limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub lanes: Vec<LaneIdx>,
    pub limit: usize,
}

/// Local runs in flight per device when `eval --batch` does not say: the worker runs a device's runs on one
/// base as one batched pass (the host engine on the CPU, candle's ops on a GPU), so several at once finish
/// sooner.
pub const DEFAULT_BATCH: usize = 4;

/// Each API lane is its own group of `concurrency` (its key, else `default_api`). Local lanes on one device
/// form one group of `local_batch` runs in flight (None: `DEFAULT_BATCH`; 1 gives clean timing:
/// each run alone, its ttft and latency its own).
pub fn limits(ws: &Workspace, lanes: &[LaneIdx], default_api: usize, local_batch: Option<usize>) -> Vec<Group> {
    let mut groups: Vec<(Option<String>, Group)> = Vec::new();
    for &l in lanes {
        let spec = &ws.lanes[l];
        if spec.backend.is_api() {
            let limit = spec.api.concurrency.map_or(default_api, |c| c as usize).max(1);
            groups.push((None, Group { lanes: vec![l], limit }));
            continue;
        }
        let device = ws.models.get(&spec.model).map(|m| m.device.clone()).unwrap_or_default();
        match groups.iter_mut().find(|(d, _)| d.as_deref() == Some(device.as_str())) {
            Some((_, g)) => g.lanes.push(l),
            None => {
                let limit = local_batch.unwrap_or(DEFAULT_BATCH).max(1);
                groups.push((Some(device), Group { lanes: vec![l], limit }));
            }
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Something that happened during a run, as it happens.
pub enum Progress {
    Started(Job),
    Finished(Job, Box<Answer>),
    Warning(String),
}

/// Runs `jobs`; every finished run is reported through `on` (failed ones too, with their partial output).
/// Cancelling stops starting runs and cancels those in flight; runs that finish meanwhile are still reported,
/// cancelled ones are not. A warning is reported once per lane.
#[allow(clippy::too_many_arguments)] // the run's whole context; a struct would only rename it
pub async fn run(
    ws: &Workspace,
    cases: &[Case],
    hashes: &[String],
    jobs: Vec<Job>,
    groups: &[Group],
    registry: Registry,
    cancel: CancellationToken,
    on: &mut (dyn FnMut(Progress) + Send),
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(registry, tx);
    // Jobs come case by case, so a group's queue alternates its lanes on each case.
    let group_of = |lane: LaneIdx| groups.iter().position(|g| g.lanes.contains(&lane));
    let mut queues: BTreeMap<usize, VecDeque<usize>> = BTreeMap::new();
    for (i, j) in jobs.iter().enumerate() {
        if let Some(g) = group_of(j.lane) {
            queues.entry(g).or_default().push_back(i);
        }
    }
    let mut in_flight = vec![0usize; groups.len()];
    let mut running: HashMap<u64, (String, Option<u64>, CancellationToken)> = HashMap::new();
    let mut warned: HashSet<(LaneIdx, String)> = HashSet::new();
    let mut stopping = false;
    loop {
        if !stopping && cancel.is_cancelled() {
            stopping = true;
            running.values().for_each(|(_, _, c)| c.cancel());
        }
        for (&g, queue) in queues.iter_mut().filter(|_| !stopping) {
            while in_flight[g] < groups[g].limit
                && let Some(i) = queue.pop_front()
            {
                let job = jobs[i];
                let Some(mut req) = RunRequest::for_lane(ws, job.lane, &cases[job.case].input) else { continue };
                // Repeat i of a case samples with seed + i: seeded lanes give N reproducible, different draws.
                let repeat = cases[job.case].repeat as u64;
                req.lane.sampling.seed = req.lane.sampling.seed.map(|s| s.wrapping_add(repeat));
                in_flight[g] += 1;
                on(Progress::Started(job));
                running.insert(i as u64, (String::new(), None, engine.start(job.lane, i as u64, req)));
            }
        }
        if running.is_empty() {
            return;
        }
        let ev = tokio::select! {
            biased;
            () = cancel.cancelled(), if !stopping => continue,
            ev = rx.recv() => match ev { Some(ev) => ev, None => return },
        };
        let Some((out, prompt_tokens, _)) = running.get_mut(&ev.run) else { continue };
        let job = jobs[ev.run as usize];
        let finished = match ev.kind {
            EventKind::Started { prompt_tokens: p } => {
                *prompt_tokens = p;
                None
            }
            EventKind::Token { text } => {
                out.push_str(&text);
                None
            }
            EventKind::Warning { text } => {
                if warned.insert((job.lane, text.clone())) {
                    on(Progress::Warning(format!("lane `{}`: {text}", ws.lanes[job.lane].id)));
                }
                None
            }
            EventKind::Info { .. } | EventKind::Progress { .. } | EventKind::Measured { .. } => None,
            EventKind::Done { usage, timings } => Some((Ok((usage, timings)), *prompt_tokens)),
            EventKind::Failed { error } => Some((Err(error.to_string()), *prompt_tokens)),
        };
        let Some((result, prompt_tokens)) = finished else { continue };
        let Some((output, _, _)) = running.remove(&ev.run) else { continue };
        if let Some(g) = group_of(job.lane) {
            in_flight[g] = in_flight[g].saturating_sub(1);
        }
        if matches!(&result, Err(e) if stopping && e == &crate::engine::EngineError::Cancelled.to_string()) {
            continue; // stopped by the user: not an answer, and run again next time
        }
        let case = &cases[job.case];
        let mut a = Answer::new(
            hashes[job.lane].clone(),
            case.hash.clone(),
            ws.lanes[job.lane].id.clone(),
            case.id.clone(),
            output,
        );
        a.prompt_tokens = prompt_tokens;
        match result {
            Ok((usage, timings)) => {
                let figures = crate::metrics::RunFigures::new(&usage, &timings, None);
                a.prompt_tokens = usage.prompt_tokens.or(prompt_tokens);
                a.completion_tokens = usage.completion_tokens;
                a.cached_prompt_tokens = usage.cached_prompt_tokens;
                a.cache_write_tokens = usage.cache_write_tokens;
                a.ttft_ms = figures.ttft_ms;
                a.total_ms = Some(figures.total_ms);
                a.busy_ms = timings.busy.map(|d| d.as_secs_f64() * 1000.0);
                a.shared_lanes = timings.shared_lanes;
                a.estimated = usage.estimated;
            }
            Err(e) => a.error = Some(e),
        }
        on(Progress::Finished(job, Box::new(a)));
    }
}
