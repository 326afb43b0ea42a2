//! The dataset effects: read with figures and findings, apply a view's change, store a promotion — each
//! re-reading the files first, so changes made meanwhile (the CLI, an editor) are kept.

use crate::app::{Action, DatasetOp, Promotion};
use crate::dataset::{Context, Dataset, Report, Split};
use crate::metrics::Counters;
use crate::workspace::store::append_line;

type Loaded = Result<(Box<Report>, Option<String>), String>;

/// One change at a time: each reads the files, then rewrites them from what it read, so two overlapping
/// changes (keys pressed faster than a write) would otherwise lose one of them.
static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(super) fn writing() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding the lock left no partial file behind (writes are atomic): carry on.
    WRITING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn load(ctx: &Context, counters: &Counters) -> Action {
    Action::DatasetLoaded(read(ctx, counters, None))
}

fn read(ctx: &Context, counters: &Counters, message: Option<String>) -> Loaded {
    let ds = Dataset::load(&ctx.dir).map_err(|e| e.to_string())?;
    Ok((Box::new(ctx.report(ds, counters)), message))
}

pub fn apply(ctx: &Context, counters: &Counters, op: DatasetOp) -> Action {
    let guard = writing();
    let done = (|| {
        let ds = Dataset::load(&ctx.dir)?;
        let (next, msg) = match op {
            DatasetOp::Replace(x) => {
                let id = x.id.clone();
                (ds.replace(*x)?, format!("saved example {id}"))
            }
            DatasetOp::Move { id, to } => (ds.move_to(&id, to)?, format!("moved {id} to {}", to.file_name())),
            DatasetOp::Delete { id } => (ds.delete(&id)?, format!("deleted {id}")),
        };
        Ok::<_, crate::dataset::DatasetError>((next, msg))
    })();
    drop(guard);
    Action::DatasetLoaded(match done {
        Ok((ds, msg)) => Ok((Box::new(ctx.report(ds, counters)), Some(msg))),
        Err(e) => Err(e.to_string()),
    })
}

/// Where `input` already is in the dataset ("example ID (FILE:LINE)"), as the promotion's store would refuse it.
pub fn find_input(dir: &std::path::Path, input: &str) -> Result<Option<String>, String> {
    let ds = Dataset::load(dir).map_err(|e| e.to_string())?;
    Ok(ds.same_input(input).map(|(split, x, line)| format!("example {} ({}:{line})", x.id, split.file_name())))
}

/// Appends the example to train.jsonl (refused for an input already in the dataset), or a rejected
/// answer to rejected.jsonl, which no split, check or export reads.
pub fn promote(ctx: &Context, p: Promotion, now_ms: u64) -> Action {
    let _guard = writing();
    let mut x = p.example;
    x.meta.time_unix_ms = Some(now_ms);
    let result = if p.reject {
        let path = ctx.dir.join("rejected.jsonl");
        let ds = Dataset::load(&ctx.dir).map_err(|e| e.to_string());
        ds.and_then(|ds| {
            x.id = ds.fresh_id(x.user());
            append_line(&path, &x.to_line()).map_err(|e| e.to_string())?;
            Ok(format!("rejected answer kept in {} (never trained on)", path.display()))
        })
    } else {
        Dataset::load(&ctx.dir).and_then(|mut ds| ds.append(Split::Train, x)).map_err(|e| e.to_string()).map(|id| {
            format!(
                "promoted as {id} into {} (stored with the `{}` prompt) — F3 shows the dataset",
                ctx.dir.join(Split::Train.file_name()).display(),
                ctx.variant
            )
        })
    };
    Action::Promoted(result)
}
