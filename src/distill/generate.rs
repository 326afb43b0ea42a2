//! Synthetic inputs: the teacher writes new inputs in the style and spread of seed inputs (and the edge
//! cases its prompt names), in batches; near duplicates of each other, of every split and of the prompts'
//! worked examples are rejected. Replies are cached by prompt, so a rerun pays for no batch twice.

use std::path::Path;

use super::{Input, Skipped};
use crate::dataset::DatasetError;
use crate::dataset::{Dataset, NEAR, Split, in_prompt};
use crate::engine::{LaneIdx, Registry};
use crate::eval::judge::{Ask, Expect, JudgeCache, ask_all, cache_key, estimate};
use crate::eval::{Estimate, lane_hash};
use crate::workspace::Workspace;

/// Inputs asked for per call.
pub const PER_CALL: usize = 10;

/// Seed inputs shown per call (a different slice each call, for spread).
const SEEDS_PER_CALL: usize = 8;

/// Calls at most, as a multiple of those `n` needs: rejected duplicates are replaced, within this bound.
const ROUNDS: usize = 3;

const GENERATE: &str = "You write realistic new inputs for a task, in the style and spread of the examples given: vary \
length, tone, language and difficulty, and include the edge cases the task's instructions name. Never copy an example \
or the instructions' own examples. Reply with only a JSON array of strings, one string per new input, no other text.";

/// The inputs to imitate: `path` (any inputs format), else the train split's inputs.
pub fn seeds(ds: &Dataset, path: Option<&Path>) -> Result<Vec<String>, DatasetError> {
    let seeds: Vec<String> = match path {
        Some(p) => super::inputs::read(p)?.into_iter().map(|i| i.text).collect(),
        None => ds.examples().filter(|(s, ..)| *s == Split::Train).map(|(_, x, _)| x.user().to_string()).collect(),
    };
    if seeds.is_empty() {
        return Err(DatasetError::Refused(
            "--generate: no seed inputs to imitate (give --seed-inputs, or add train examples first)".into(),
        ));
    }
    Ok(seeds)
}

/// Call `batch`'s prompt: the teacher's instructions, a slice of the seeds, and how many to write.
fn ask(instructions: &str, seeds: &[String], batch: usize, k: usize) -> Ask {
    let shown: Vec<String> = (0..SEEDS_PER_CALL.min(seeds.len()))
        .map(|i| seeds[(batch * SEEDS_PER_CALL + i) % seeds.len()].replace('\n', " "))
        .enumerate()
        .map(|(i, s)| format!("{}. {s}", i + 1))
        .collect();
    Ask {
        system: GENERATE.into(),
        input: format!(
            "The task's instructions (what the answers are written under):\n---\n{instructions}\n---\n\nExample inputs:\n{}\n\nWrite {k} new inputs, each different from the examples and from each other. (Batch {}.)",
            shown.join("\n"),
            batch + 1
        ),
    }
}

/// What generation produced.
#[derive(Debug, Default)]
pub struct Generated {
    pub inputs: Vec<Input>,
    pub skipped: Vec<Skipped>,
    pub calls: usize,
    pub failed: Vec<String>,
    /// The most the generation calls could have cost (the estimate's upper bound over those allowed).
    pub bound_usd: f64,
}

/// Asks the teacher for `n` new inputs (up to `ROUNDS` times the calls that needs, replacing rejected ones,
/// and no more calls than `cap` dollars allow by the estimate's upper bound); `confirm` sees the estimate of
/// the most calls it may make first.
#[allow(clippy::too_many_arguments)] // the run's whole context; a struct would only rename it
pub async fn generate(
    ws: &Workspace,
    teacher: LaneIdx,
    n: usize,
    seeds: &[String],
    ds: &Dataset,
    registry: Registry,
    cap: Option<f64>,
    confirm: &mut (dyn FnMut(&Estimate) -> bool + Send),
) -> Result<Generated, DatasetError> {
    let lane = &ws.lanes[teacher];
    let instructions = ws.prompt_text(&lane.prompt).unwrap_or_default().to_string();
    let prompts: Vec<String> = ws.prompts.keys().filter_map(|k| ws.prompt_text(k).map(String::from)).collect();
    let mut most = n.div_ceil(PER_CALL) * ROUNDS;
    let mut plan: Vec<(LaneIdx, Expect, Ask)> =
        (0..most).map(|b| (teacher, Expect::List { seed: b as u64 }, ask(&instructions, seeds, b, PER_CALL))).collect();
    let bound = |plan: &[(LaneIdx, Expect, Ask)]| {
        let e = estimate(ws, plan);
        e.prompt_usd + e.completion_max_usd
    };
    if let Some(cap) = cap {
        while most > 0 && bound(&plan[..most]) > cap {
            most -= 1;
        }
        if most == 0 {
            return Err(DatasetError::Refused(format!(
                "--max-cost ${cap}: not even one call for new inputs fits (it may cost up to ${:.4})",
                bound(&plan[..1])
            )));
        }
        plan.truncate(most);
    }
    if !confirm(&estimate(ws, &plan)) {
        return Err(DatasetError::Refused("not confirmed: no paid calls were made".into()));
    }
    let mut cache = JudgeCache::load(&ws.root).map_err(DatasetError::Refused)?;
    let hash = lane_hash(ws, lane);
    let mut out = Generated { bound_usd: bound(&plan), ..Generated::default() };
    let mut next = 0;
    while out.inputs.len() < n && next < most {
        let want = (n - out.inputs.len()).div_ceil(PER_CALL).min(most - next);
        let round: Vec<(LaneIdx, Expect, Ask)> = plan[next..next + want].to_vec();
        next += want;
        let missing: Vec<_> = round.iter().filter(|(_, _, a)| cache.get(&hash, a).is_none()).cloned().collect();
        out.calls += missing.len();
        let failures = ask_all(ws, registry.clone(), missing, &mut cache).await;
        for (b, (_, _, a)) in round.iter().enumerate() {
            let batch = next - want + b + 1;
            let Some(reply) = cache.get(&hash, a) else {
                let why = failures.get(&cache_key(&hash, a)).cloned().unwrap_or_else(|| "no reply".into());
                out.failed.push(format!("batch {batch}: {why}"));
                continue;
            };
            let list = crate::eval::judge::parse_list(&reply.text).unwrap_or_default();
            let candidates: Vec<Input> = list
                .into_iter()
                .enumerate()
                .map(|(i, text)| Input { text, origin: format!("generated batch {batch} #{}", i + 1) })
                .collect();
            // Screened with the inputs kept so far, so that a later batch's repeat of them is caught too.
            let known = out.inputs.len();
            let (fresh, dup) = super::screen(ds, [out.inputs.clone(), candidates].concat());
            out.skipped.extend(dup);
            for input in fresh.into_iter().skip(known) {
                if out.inputs.len() >= n {
                    break;
                }
                if let Some((j, inside)) = prompts.iter().find_map(|p| in_prompt(&input.text, p, NEAR)) {
                    let why =
                        format!("a worked example of a prompt (5-gram Jaccard {j:.2}, {:.0}% inside)", inside * 100.0);
                    out.skipped.push(Skipped { input, why });
                    continue;
                }
                out.inputs.push(input);
            }
        }
    }
    Ok(out)
}
