//! What the dataset is judged against, taken from the workspace once: its system prompt, the other prompt
//! variants (for few-shot leaks) and the measuring lane's tokenizer; and the full report (stats + check).

use std::path::PathBuf;
use std::sync::Arc;

use super::{Check, Dataset, Example, Finding, Stats, check, stats};
use crate::engine::local::prompt::PromptTokenizer;
use crate::metrics::Counters;
use crate::workspace::{ModelSpec, Workspace};

/// The workspace's side of the dataset, owned so it can travel to a worker thread.
#[derive(Debug, Clone)]
pub struct Context {
    pub dir: PathBuf,
    pub system_prompt: String,
    /// The prompt variant examples carry (`[dataset] system_prompt`).
    pub variant: String,
    /// The other prompt variants: (name, text).
    pub prompts: Vec<(String, String)>,
    /// The measuring lane's id and model.
    pub lane: Option<(String, ModelSpec)>,
}

/// A dataset with its figures and findings, as the view and the CLI show them.
#[derive(Debug, Clone)]
pub struct Report {
    pub dataset: Dataset,
    pub stats: Stats,
    /// What measured the tokens ("lane `tuned` (smollm2), context 8192"), or why nothing could.
    pub measured_by: Result<String, String>,
    pub findings: Vec<Finding>,
}

impl Context {
    pub fn of(ws: &Workspace) -> Self {
        let prompts = ws
            .prompts
            .iter()
            .filter(|(name, _)| **name != ws.dataset.system_prompt)
            .map(|(name, p)| (name.clone(), p.text.clone()))
            .collect();
        Self {
            dir: ws.dataset_dir(),
            system_prompt: ws.dataset_system_prompt().to_string(),
            variant: ws.dataset.system_prompt.clone(),
            prompts,
            lane: ws.dataset_lane().map(|(l, m)| (l.id.clone(), m.clone())),
        }
    }

    pub fn measure(&self, counters: &Counters) -> Result<Measure, String> {
        let (lane, model) =
            self.lane.as_ref().ok_or("no local lane to measure tokens with (set `[dataset] lane` to a local lane)")?;
        let tok = counters.local(model).map_err(|e| format!("lane `{lane}`: {e}"))?;
        let context = tok.context_length();
        let ctx = context.map_or(String::new(), |c| format!(", context {c}"));
        Ok(Measure { tok, context, label: format!("lane `{lane}` ({}){ctx}", model.name) })
    }

    /// Checks `ds` against this workspace; `measure` counts tokens for the over-long check.
    pub fn check(&self, ds: &Dataset, measure: Option<&Measure>) -> Vec<Finding> {
        let count = measure.map(|m| move |x: &Example| m.tokens(x));
        let c = Check {
            system_prompt: &self.system_prompt,
            system_variant: &self.variant,
            prompts: self.prompts.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect(),
            tokens: count.as_ref().map(|f| f as super::CountTokens<'_>),
            context: measure.and_then(|m| m.context),
        };
        check(ds, &c)
    }

    pub fn report(&self, dataset: Dataset, counters: &Counters) -> Report {
        let m = self.measure(counters);
        let count = m.as_ref().ok().map(|m| move |x: &Example| m.tokens(x));
        let stats = stats(&dataset, count.as_ref().map(|f| f as super::CountTokens<'_>));
        let findings = self.check(&dataset, m.as_ref().ok());
        Report { dataset, stats, measured_by: m.map(|m| m.label), findings }
    }
}

/// One model's tokenizer and chat template, measuring whole examples.
pub struct Measure {
    tok: Arc<PromptTokenizer>,
    /// The model's context window, when its files say.
    pub context: Option<usize>,
    pub label: String,
}

impl Measure {
    /// Tokens of the whole example as training renders it (chat template, answer and end of turn included).
    pub fn tokens(&self, x: &Example) -> Result<usize, String> {
        self.tok.chat_ids(&x.pairs()).map(|ids| ids.len()).map_err(|e| e.to_string())
    }
}
