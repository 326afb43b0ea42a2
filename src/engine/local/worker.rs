//! One worker thread per device: admits runs, then steps every active run in turn (a prefill chunk or
//! one token each), so lanes on one device stream together and cancellation is seen between steps.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use candle_core::Device;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::generate::{Job, Step};
use super::store::ModelStore;
use super::{LocalError, Result};
use crate::engine::{EngineError, LaneSink, RunRequest, Usage};

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
        // Every run this round shares the device with the others: their panes say so.
        for a in &active {
            a.job.sink.shared_with(active.len());
        }
        let mut i = 0;
        while i < active.len() {
            // Cancelled, or nobody is waiting any more (the run's task was dropped): stop decoding for no one.
            if active[i].cancel.is_cancelled() || active[i].job.sink.is_closed() || active[i].reply.is_closed() {
                let a = active.swap_remove(i);
                let _ = a.reply.send(Err(EngineError::Cancelled));
                continue;
            }
            let began = std::time::Instant::now();
            let step = catch_unwind(AssertUnwindSafe(|| active[i].job.step()))
                .unwrap_or_else(|p| Step::Finished(Err(LocalError::Run(format!("panicked: {}", panic_text(&*p))))));
            active[i].job.sink.add_busy(began.elapsed());
            match step {
                Step::More => i += 1,
                Step::Finished(r) => {
                    let a = active.swap_remove(i);
                    let _ = a.reply.send(r.map_err(|e| EngineError::Backend(e.to_string())));
                }
            }
        }
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
    sink.info(format!("{name} · {}{adapter_note}", model.base().format));
    if let Some(w) = template.warning() {
        sink.warning(w);
    }
    if let Some(note) = prompt.note {
        sink.warning(note);
    }
    let ids = prompt.ids;
    let n = ids.len() as u64;
    let job = Job::new(view, model.tokenizer.clone(), ids, &req.lane.sampling, sink.clone())?;
    sink.started(Some(n));
    Ok(job)
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}
