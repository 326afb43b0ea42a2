//! One worker thread per device: admits runs, then steps every active run in turn (a prefill chunk or
//! one token each), so lanes on one device stream together and cancellation is seen between steps.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use candle_core::Device;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::decoder::{Batch, Decoder, MAX_BATCH};
use super::generate::{Job, Step, prefill_chunk};
use super::store::ModelStore;
use super::{LocalError, Result};
use crate::engine::{EngineError, LaneSink, RunRequest, Usage};
use crate::workspace::KvCacheType;

pub struct Request {
    pub req: RunRequest,
    pub sink: LaneSink,
    pub cancel: CancellationToken,
    pub reply: oneshot::Sender<std::result::Result<Usage, EngineError>>,
}

#[derive(Default)]
pub struct Workers {
    pub store: Arc<ModelStore>,
    queues: Mutex<HashMap<String, Sender<Request>>>,
}

impl Workers {
    /// Hands a run to the worker of its device, starting the worker on first use.
    /// The device is opened once, in the worker's own thread (never on the caller's runtime).
    pub fn submit(&self, device_spec: &str, r: Request) -> std::result::Result<(), String> {
        let mut queues = self.queues.lock().map_err(|_| "the local worker table was poisoned".to_string())?;
        let tx = match queues.get(device_spec) {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = channel();
                let store = self.store.clone();
                let spec = device_spec.to_string();
                std::thread::Builder::new()
                    .name(format!("tunebench-{spec}"))
                    .spawn(move || match pick_device(&spec) {
                        Ok((name, device)) => run_worker(rx, store, device, name),
                        Err(e) => refuse_all(rx, &e.to_string()),
                    })
                    .map_err(|e| format!("cannot start the {device_spec} worker: {e}"))?;
                queues.insert(device_spec.to_string(), tx.clone());
                tx
            }
        };
        tx.send(r).map_err(|_| format!("the {device_spec} worker has stopped"))
    }
}

/// `auto` takes the GPU this build supports, else the CPU; a GPU this build lacks is an error.
pub fn pick_device(spec: &str) -> Result<(String, Device)> {
    let gpu_missing = |what: &str| {
        LocalError::Run(format!("device `{spec}`: this build has no {what} support (rebuild with --features {what})"))
    };
    match spec {
        "cpu" => Ok(("cpu".into(), Device::Cpu)),
        "metal" if cfg!(feature = "metal") => Ok(("metal".into(), Device::new_metal(0)?)),
        "metal" => Err(gpu_missing("metal")),
        s if s.starts_with("cuda:") => {
            if !cfg!(feature = "cuda") {
                return Err(gpu_missing("cuda"));
            }
            let n: usize = s[5..].parse().map_err(|_| LocalError::Run(format!("bad device `{s}`")))?;
            Ok((s.to_string(), Device::new_cuda(n)?))
        }
        _ => {
            if cfg!(feature = "cuda")
                && let Ok(d) = Device::new_cuda(0)
            {
                return Ok(("cuda:0".into(), d));
            }
            if cfg!(feature = "metal")
                && let Ok(d) = Device::new_metal(0)
            {
                return Ok(("metal".into(), d));
            }
            Ok(("cpu".into(), Device::Cpu))
        }
    }
}

/// A device that could not be opened fails every run sent to it, with the reason.
fn refuse_all(rx: Receiver<Request>, why: &str) {
    while let Ok(r) = rx.recv() {
        let _ = r.reply.send(Err(EngineError::Backend(why.to_string())));
    }
}

struct Active {
    job: Job,
    cancel: CancellationToken,
    reply: oneshot::Sender<std::result::Result<Usage, EngineError>>,
}

fn run_worker(rx: Receiver<Request>, store: Arc<ModelStore>, device: Device, name: String) {
    let mut active: Vec<Active> = Vec::new();
    let mut batch = Batch::default();
    loop {
        if active.is_empty() {
            match rx.recv() {
                Ok(r) => admit(r, &store, &device, &name, &mut active),
                Err(_) => return,
            }
        }
        while let Ok(r) = rx.try_recv() {
            admit(r, &store, &device, &name, &mut active);
        }
        // Cancelled, or nobody is waiting any more (the run's task was dropped): stop working for no one, whether
        // or not the run would step this round.
        let mut i = 0;
        while i < active.len() {
            let a = &active[i];
            if a.cancel.is_cancelled() || a.job.sink.is_closed() || a.reply.is_closed() {
                let _ = active.swap_remove(i).reply.send(Err(EngineError::Cancelled));
            } else {
                i += 1;
            }
        }
        // Every run this round shares the device with the others: their panes say so.
        for a in &active {
            a.job.sink.shared_with(active.len());
        }
        let order = round(&active.iter().map(|a| a.job.prefill_left()).collect::<Vec<_>>(), prefill_chunk(&device));
        let mut finished = Vec::new();
        for pass in passes(&order, |i, j| active[i].job.decoder().batches_with(active[j].job.decoder())) {
            // The pass's time, split by its rows' tokens: each run's own share of the device.
            let tokens: Vec<usize> = pass.iter().map(|&i| active[i].job.step_tokens().max(1)).collect();
            let all: usize = tokens.iter().sum();
            let began = std::time::Instant::now();
            let steps = step_together(&mut batch, &mut active, &pass);
            let took = began.elapsed();
            for ((&i, step), t) in pass.iter().zip(steps).zip(tokens) {
                active[i].job.sink.add_busy(took.mul_f64(t as f64 / all.max(1) as f64));
                if let Step::Finished(r) = step {
                    finished.push((i, r.map_err(|e| EngineError::Backend(e.to_string()))));
                }
            }
        }
        // Highest index first, so that each removal leaves the lower indices in place.
        finished.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, r) in finished {
            let a = active.swap_remove(i);
            let _ = a.reply.send(r);
        }
    }
}

/// The runs that step this round, in order, given each run's prompt tokens still to prefill (0: decoding):
/// every decoding run one token, then prefill chunks, the run with the least prompt left first, as many as fit
/// in one chunk's worth of tokens (at least one). A short prompt is thus never stuck behind a long one's chunks
/// (its first token comes after its own prefill, as the shortest remaining prefill goes first; two short
/// prompts share one pass), and tokens keep streaming while a long prompt prefills.
fn round(prefill_left: &[usize], chunk_size: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..prefill_left.len()).filter(|&i| prefill_left[i] == 0).collect();
    let mut waiting: Vec<usize> = (0..prefill_left.len()).filter(|&i| prefill_left[i] > 0).collect();
    waiting.sort_by_key(|&i| (prefill_left[i], i));
    let mut budget = chunk_size;
    for (k, i) in waiting.into_iter().enumerate() {
        let chunk = prefill_left[i].min(chunk_size);
        if k > 0 && chunk > budget {
            break;
        }
        budget = budget.saturating_sub(chunk);
        order.push(i);
    }
    order
}

/// The round's runs as passes: runs whose decoders batch together (one base on the host) share a pass, at
/// most `MAX_BATCH` a pass, in the round's order of their first run; the others step alone.
fn passes(order: &[usize], together: impl Fn(usize, usize) -> bool) -> Vec<Vec<usize>> {
    let mut passes: Vec<Vec<usize>> = Vec::new();
    for &i in order {
        match passes.iter_mut().find(|p| p.len() < MAX_BATCH && together(p[0], i)) {
            Some(p) => p.push(i),
            None => passes.push(vec![i]),
        }
    }
    passes
}

/// One pass's steps: a run alone steps by itself; several go through one batched forward. A pass that fails
/// as a whole (not one row's numbers) steps each run alone, so that an error lands on the run it belongs to.
fn step_together(batch: &mut Batch, active: &mut [Active], pass: &[usize]) -> Vec<Step> {
    let guarded = |f: &mut dyn FnMut() -> Step| {
        catch_unwind(AssertUnwindSafe(f))
            .unwrap_or_else(|p| Step::Finished(Err(LocalError::Run(format!("panicked: {}", panic_text(&*p))))))
    };
    if let [i] = pass {
        return vec![guarded(&mut || active[*i].job.step())];
    }
    let passed = catch_unwind(AssertUnwindSafe(|| {
        let mut rows: Vec<_> =
            active.iter_mut().enumerate().filter(|(i, _)| pass.contains(i)).map(|(i, a)| (i, a.job.row())).collect();
        // The pass's rows in the round's order.
        rows.sort_by_key(|(i, _)| pass.iter().position(|p| p == i));
        let mut rows: Vec<_> = rows.into_iter().map(|(_, r)| r).collect();
        Decoder::forward_batch(batch, &mut rows)
    }));
    match passed {
        Ok(Ok(logits)) => pass
            .iter()
            .zip(logits)
            .map(|(&i, l)| {
                let mut l = Some(l);
                guarded(&mut || match l.take() {
                    Some(l) => active[i].job.advance(l),
                    None => Step::Finished(Err(LocalError::Run("a step advanced twice".into()))),
                })
            })
            .collect(),
        _ => pass.iter().map(|&i| guarded(&mut || active[i].job.step())).collect(),
    }
}

fn admit(r: Request, store: &ModelStore, device: &Device, name: &str, active: &mut Vec<Active>) {
    let Request { req, sink, cancel, reply } = r;
    if cancel.is_cancelled() || reply.is_closed() {
        let _ = reply.send(Err(EngineError::Cancelled));
        return;
    }
    let made = catch_unwind(AssertUnwindSafe(|| prepare(&req, sink, store, device, name)))
        .unwrap_or_else(|p| Err(LocalError::Run(format!("panicked while loading: {}", panic_text(&*p)))));
    match made {
        Ok(job) => active.push(Active { job, cancel, reply }),
        Err(e) => {
            let _ = reply.send(Err(EngineError::Backend(e.to_string())));
        }
    }
}

/// Loads (or reuses) the model, renders and tokenizes the prompt, and reports where the lane runs.
fn prepare(req: &RunRequest, sink: LaneSink, store: &ModelStore, device: &Device, name: &str) -> Result<Job> {
    let spec = req.model.as_ref().ok_or_else(|| LocalError::Run("a local lane needs a [models] entry".into()))?;
    let model = store.get(&spec.path, device, name)?;
    let (view, adapter_note) = match &req.lane.adapter {
        None => (model.plain.clone(), String::new()),
        Some(a) => {
            let dir = if std::path::Path::new(a).is_absolute() { a.into() } else { req.workspace_root.join(a) };
            let v = model.with_adapter(&dir)?;
            for w in &v.warnings {
                sink.warning(w.clone());
            }
            (v.model.clone(), format!(" · LoRA {} r{} ×{}", v.name, v.rank, v.modules))
        }
    };
    // The workspace's template for this model, when it names one, replaces the file's own for this run.
    let own;
    let template = match &spec.chat_template {
        Some(src) => {
            own = super::prompt::template_for(&model.tokenizer, Some(src))?;
            &own
        }
        None => &model.template,
    };
    let opts = super::template::RenderOptions { enable_thinking: req.lane.enable_thinking };
    let prompt = super::prompt::prompt(&model.tokenizer, template, &req.system_prompt, &req.input, opts)?;
    // The cache's element is part of what the lane's speed rests on: a non-default one is named.
    let kv = spec.kv_cache;
    let kv_note = if kv == KvCacheType::F32 { String::new() } else { format!(" · KV {}", kv.as_str()) };
    sink.info(format!("{name} · {}{adapter_note}{kv_note}", model.base().format));
    if !view.holds_kv(kv) {
        sink.warning(format!(
            "kv_cache = \"{}\" applies to the CPU engine; on {name} the KV cache keeps the model's own dtype",
            kv.as_str()
        ));
    }
    if let Some(w) = template.warning() {
        sink.warning(w);
    }
    if let Some(note) = prompt.note {
        sink.warning(note);
    }
    let ids = prompt.ids;
    let n = ids.len() as u64;
    let job = Job::new(view, model.tokenizer.clone(), ids, (&req.lane.sampling, kv), sink.clone())?;
    sink.started(Some(n));
    Ok(job)
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::round;

    #[test]
    fn decoders_step_every_round_and_the_shortest_prefill_goes_next() {
        // Two decoding runs, a long prompt (1,300 left) and a short one (120 left): both decoders, then the
        // short prompt's chunk; the long one waits until the short one decodes.
        assert_eq!(round(&[0, 1300, 0, 120], 64), vec![0, 2, 3]);
        assert_eq!(round(&[0, 1300, 0, 0], 64), vec![0, 2, 3, 1]);
        // Short prompts share one chunk's worth of tokens; a tie goes to the earlier run; nothing to do gives an
        // empty round; one run alone always steps.
        assert_eq!(round(&[1300, 30, 30, 0], 64), vec![3, 1, 2]);
        assert_eq!(round(&[1300, 30, 40], 64), vec![1]);
        assert_eq!(round(&[64, 64], 64), vec![0]);
        assert_eq!(round(&[], 64), Vec::<usize>::new());
        assert_eq!(round(&[900], 64), vec![0]);
        assert_eq!(round(&[0], 64), vec![0]);
        // A GPU's chunk is longer: two short prompts fit in it, the long one then waits its turn.
        assert_eq!(round(&[1300, 30, 40], 512), vec![1, 2]);
        assert_eq!(round(&[0, 1300], 512), vec![0, 1]);
    }

    #[test]
    fn a_long_prompt_is_never_starved_of_its_turn() {
        // However many runs decode, every round that has a prefill left gives one run a chunk.
        let mut left = vec![0, 0, 0, 640];
        let mut rounds = 0;
        while left[3] > 0 {
            let order = round(&left, 64);
            assert!(order.contains(&3));
            left[3] = left[3].saturating_sub(64);
            rounds += 1;
        }
        assert_eq!(rounds, 10);
    }
}
