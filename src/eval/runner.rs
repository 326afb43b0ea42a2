//! Runs every (case, lane) pair not already cached: each lane with its own limit of runs in flight.

use std::collections::{BTreeMap, HashMap, VecDeque};

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

/// How many runs each lane keeps in flight: local lanes one (lanes on one device share its model and take
/// turns on it, so more would only queue), API lanes their `concurrency` key, else `default_api`.
pub fn limits(ws: &Workspace, lanes: &[LaneIdx], default_api: usize) -> HashMap<LaneIdx, usize> {
    lanes
        .iter()
        .map(|&l| {
            let spec = &ws.lanes[l];
            let n = if spec.backend.is_api() { spec.api.concurrency.map_or(default_api, |c| c as usize) } else { 1 };
            (l, n.max(1))
        })
        .collect()
}

/// Something that happened during a run, as it happens.
pub enum Progress {
    Started(Job),
    Finished(Job, Box<Answer>),
    Warning(String),
}

/// Runs `jobs`; every finished run is reported through `on` (failed ones too, with their partial output).
/// Cancelling stops starting runs and cancels those in flight.
#[allow(clippy::too_many_arguments)] // the run's whole context; a struct would only rename it
pub async fn run(
    ws: &Workspace,
    cases: &[Case],
    hashes: &[String],
    jobs: Vec<Job>,
    limits: &HashMap<LaneIdx, usize>,
    registry: Registry,
    cancel: CancellationToken,
    on: &mut (dyn FnMut(Progress) + Send),
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(registry, tx);
    let mut queues: BTreeMap<LaneIdx, VecDeque<usize>> = BTreeMap::new();
    for (i, j) in jobs.iter().enumerate() {
        queues.entry(j.lane).or_default().push_back(i);
    }
    let mut in_flight: HashMap<LaneIdx, usize> = HashMap::new();
    let mut running: HashMap<u64, (String, Option<u64>, CancellationToken)> = HashMap::new();
    let mut left = jobs.len();
    while left > 0 {
        for (lane, queue) in &mut queues {
            let limit = limits.get(lane).copied().unwrap_or(1);
            while in_flight.get(lane).copied().unwrap_or(0) < limit
                && let Some(i) = queue.pop_front()
            {
                let job = jobs[i];
                let Some(req) = RunRequest::for_lane(ws, job.lane, &cases[job.case].input) else {
                    left -= 1;
                    continue;
                };
                *in_flight.entry(job.lane).or_default() += 1;
                on(Progress::Started(job));
                running.insert(i as u64, (String::new(), None, engine.start(job.lane, i as u64, req)));
            }
        }
        let ev = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                running.values().for_each(|(_, _, c)| c.cancel());
                return;
            }
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
                on(Progress::Warning(format!("lane `{}`: {text}", ws.lanes[job.lane].id)));
                None
            }
            EventKind::Info { .. } | EventKind::Progress { .. } => None,
            EventKind::Done { usage, timings } => Some((Ok((usage, timings)), *prompt_tokens)),
            EventKind::Failed { error } => Some((Err(error.to_string()), *prompt_tokens)),
        };
        let Some((result, prompt_tokens)) = finished else { continue };
        let Some((output, _, _)) = running.remove(&ev.run) else { continue };
        if let Some(n) = in_flight.get_mut(&job.lane) {
            *n = n.saturating_sub(1);
        }
        left -= 1;
        let case = &cases[job.case];
        let mut a = Answer {
            lane_hash: hashes[job.lane].clone(),
            case_hash: case.hash.clone(),
            lane: ws.lanes[job.lane].id.clone(),
            case_id: case.id.clone(),
            output,
            error: None,
            prompt_tokens,
            completion_tokens: None,
            cached_prompt_tokens: None,
            ttft_ms: None,
            total_ms: None,
            busy_ms: None,
            estimated: false,
            time_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            from_cache: false,
        };
        match result {
            Ok((usage, timings)) => {
                let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
                a.prompt_tokens = usage.prompt_tokens.or(prompt_tokens);
                a.completion_tokens = usage.completion_tokens;
                a.cached_prompt_tokens = usage.cached_prompt_tokens;
                a.ttft_ms = timings.ttft.map(ms);
                a.total_ms = Some(ms(timings.total));
                a.busy_ms = timings.busy.map(ms);
                a.estimated = usage.estimated;
            }
            Err(e) => a.error = Some(e),
        }
        on(Progress::Finished(job, Box::new(a)));
    }
}
