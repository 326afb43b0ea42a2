//! Token lengths of examples in the dataset lane's own tokenizer and chat template, and its context size.

use std::sync::Arc;

use super::Example;
use crate::engine::local::prompt::PromptTokenizer;
use crate::metrics::Counters;
use crate::workspace::Workspace;

pub struct Measure {
    tok: Arc<PromptTokenizer>,
    /// The model's context window, when its files say.
    pub context: Option<usize>,
    /// "lane `tuned` (smollm2)", for reports.
    pub label: String,
}

impl Measure {
    /// The `[dataset] lane`'s tokenizer; an error says why token figures are unavailable.
    pub fn open(ws: &Workspace, counters: &Counters) -> Result<Self, String> {
        let (lane, model) =
            ws.dataset_lane().ok_or("no local lane to measure tokens with (set `[dataset] lane` to a local lane)")?;
        let tok = counters.local(model).map_err(|e| format!("lane `{}`: {e}", lane.id))?;
        let context = tok.context_length();
        Ok(Self { tok, context, label: format!("lane `{}` ({})", lane.id, model.name) })
    }

    /// Tokens of the whole example as training renders it (chat template, answer and end of turn included).
    pub fn tokens(&self, x: &Example) -> Result<usize, String> {
        self.tok.chat_ids(&x.pairs()).map(|ids| ids.len()).map_err(|e| e.to_string())
    }
}
