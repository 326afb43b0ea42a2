//! A distill run started from the TUI: the `tunebench distill` command itself on a task, its progress and
//! summary lines sent back as actions; paid calls wait for the view's `y` (the command asks for `--yes`).

use std::io::Write;

use tokio::sync::mpsc::UnboundedSender;

use crate::app::{Action, DistillMsg};
use crate::cli::distill::{DistillArgs, execute};
use crate::cli::eval::Streams;
use crate::distill::Filter;
use crate::engine::Registry;
use crate::workspace::Workspace;

/// Lines written to it go to the TUI: each finished line (a progress line replaces the last one).
struct Lines {
    tx: UnboundedSender<Action>,
    progress: bool,
    buf: Vec<u8>,
}

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            let _ = self.tx.send(Action::Distill(DistillMsg::Line { progress: self.progress, text }));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts the run on a task (None), or says why it cannot (no loop to report to).
pub fn start(
    ws: &Workspace,
    registry: Registry,
    tx: Option<UnboundedSender<Action>>,
    (teacher, inputs, filter, yes): (String, String, Filter, bool),
) -> (Option<Action>, Option<tokio::task::AbortHandle>) {
    let Some(tx) = tx else {
        let e = "distill reports to the TUI's event loop".to_string();
        return (Some(Action::Distill(DistillMsg::Finished(Err(e)))), None);
    };
    let root = ws.root.clone();
    let path = root.join(&inputs);
    let args = DistillArgs {
        teacher,
        inputs: Some(path),
        generate: None,
        seed_inputs: None,
        limit: None,
        split: "train".into(),
        filter,
        concurrency: crate::eval::runner::DEFAULT_API_CONCURRENCY,
        max_cost: None,
        yes,
    };
    let task = tokio::spawn(async move {
        let mut out = Lines { tx: tx.clone(), progress: false, buf: Vec::new() };
        let mut err = Lines { tx: tx.clone(), progress: true, buf: Vec::new() };
        let streams = Streams { stdout: &mut out, stderr: &mut err, confirm: None, tty: false };
        let result = execute(&root, &args, registry, streams).await;
        let msg = match result {
            Ok(code) => DistillMsg::Finished(Ok(code)),
            Err(e) => {
                let text = format!("{e:#}");
                match text.split_once("; not confirmed: no terminal to ask on") {
                    Some((estimate, _)) => DistillMsg::NeedsConfirm(format!("{estimate}. Run them?")),
                    None => DistillMsg::Finished(Err(text)),
                }
            }
        };
        let _ = tx.send(Action::Distill(msg));
    });
    (None, Some(task.abort_handle()))
}
