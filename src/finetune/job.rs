//! One hosted fine-tuning job from dataset to lane, for `tunebench train --on` and F10 alike: the session
//! (provider lane, endpoint, key, the job in progress), the plan (rules checked, cost estimated: nothing sent),
//! the uploads and the job's creation (the state saved after each), following it to its end, and the lane
//! written on success. Progress goes to a `Report` callback; the callers print it or show it.

use std::path::Path;

use super::{Provider, client, data, state};
use crate::engine::api::Env;
use crate::metrics::prices;
use crate::workspace::{self, LaneSpec, Workspace};

/// What the user chose (the CLI's flags; F10 takes the defaults).
#[derive(Debug, Clone)]
pub struct Options {
    pub provider: Provider,
    pub base: Option<String>,
    pub epochs: Option<u32>,
    pub lr_mult: Option<f64>,
    pub suffix: Option<String>,
    pub lane: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub account: Option<String>,
    pub deployment: Option<String>,
    pub seed: u64,
    pub rank: usize,
    pub alpha: f64,
    /// Seconds between reads of a running job.
    pub poll: f64,
}

impl Options {
    /// The defaults `tunebench train --on PROVIDER` runs with.
    pub fn new(provider: Provider) -> Self {
        Self {
            provider,
            base: None,
            epochs: None,
            lr_mult: None,
            suffix: None,
            lane: None,
            base_url: None,
            api_key_env: None,
            account: None,
            deployment: None,
            seed: 42,
            rank: 16,
            alpha: 32.0,
            poll: 10.0,
        }
    }
}

/// Progress while a job is followed.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A line about what was done (an upload, a state change).
    Say(String),
    /// Events not yet shown, oldest first.
    Events(Vec<client::Event>),
    /// The job was created.
    Created { job: String, status: String },
    /// The job's status changed.
    Status { job: String, status: String },
}

impl Report {
    /// The line a report reads as (the events' own lines are the caller's to show: loss lines or a chart).
    pub fn line(&self) -> Option<String> {
        match self {
            Report::Say(line) => Some(line.clone()),
            Report::Created { job, status } => Some(format!("job {job} created ({status})")),
            Report::Status { job, status } => Some(format!("job {job}: {status}")),
            Report::Events(_) => None,
        }
    }
}

/// How a followed job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The lane `lane` asks `model` now (`priced`: with the fine-tuned price from tunebench's table).
    Succeeded { job: String, status: String, model: String, lane: String, priced: bool },
    /// Failed or cancelled, and why.
    Ended { job: String, status: String, why: String },
}

impl Outcome {
    /// The line the CLI prints and F10 shows.
    pub fn line(&self) -> String {
        match self {
            Outcome::Succeeded { job, status, model, lane, priced } => {
                let priced = if *priced { "with its price" } else { "price unknown (add [pricing] for it)" };
                format!("job {job} {status}: {model}; lane `{lane}` asks it ({priced})")
            }
            Outcome::Ended { job, status, why } => format!("job {job} {status}: {}", crate::visible::escape_line(why)),
        }
    }
}

/// The checked dataset and the cost, before anything is sent.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The model to fine-tune.
    pub model: String,
    pub data: data::Prepared,
    /// `$0.12`, a range, or "unknown (…)".
    pub estimate: String,
    /// Said before the plan (the dated snapshot chosen for a lane's alias).
    pub notes: Vec<String>,
    pub base_url: String,
}

impl Plan {
    /// What will be uploaded and what it costs, on one line.
    pub fn headline(&self) -> String {
        let d = &self.data;
        format!(
            "fine-tune {} on {}: {} training example(s), {} validation, {} tokens an epoch (o200k); training cost {}",
            self.model, self.base_url, d.train_examples, d.valid_examples, d.train_tokens, self.estimate
        )
    }
}

/// A workspace's hosted fine-tuning: its provider lane, endpoint and key, and the job in progress if any.
pub struct Session {
    pub ws: Workspace,
    pub provider: Provider,
    pub lane: LaneSpec,
    pub base_url: String,
    pub client: client::Client,
    /// The job in progress (finetune-job.json), if any.
    pub saved: Option<state::State>,
}

impl Session {
    /// Reads the workspace and the job in progress; `cancel`: the session is for --cancel (Fireworks needs no
    /// account and deployment for that).
    pub fn open(root: &Path, o: &Options, env: &Env, cancel: bool) -> Result<Session, String> {
        let ws = workspace::load(root).map_err(|e| e.to_string())?;
        let provider = o.provider;
        let lane = super::provider_lane(&ws, &provider, o.lane.as_deref())?.clone();
        // Fireworks fine-tunes under its management API, not the inference URL its lanes name.
        let base_url = o
            .base_url
            .clone()
            .or_else(|| provider.manage.map(String::from))
            .or_else(|| lane.base_url.clone())
            .unwrap_or_else(|| provider.base.into());
        let key = super::key(&lane, &provider, o.api_key_env.as_deref(), env)
            .map_err(|e| format!("lane `{}`: {e}", lane.id))?;
        let mut client = client::Client::new(provider.dialect, &base_url, key, lane.api.max_retries)?;
        let saved = state::load(&ws.root)?;
        client.account = saved.as_ref().and_then(|s| s.account.clone()).or_else(|| o.account.clone());
        if provider.dialect == client::Dialect::Fireworks
            && saved.is_none()
            && !cancel
            && (o.account.is_none() || o.deployment.is_none())
        {
            return Err("--on fireworks needs --account ID and --deployment accounts/ID/deployments/NAME (a \
                        deployment with LoRA add-ons: Fireworks serves customers' LoRAs there, not serverless); \
                        nothing was uploaded"
                .into());
        }
        if let Some(s) = &saved
            && s.provider != provider.name
        {
            return Err(format!(
                "the job in progress in {} is on {}: follow it with --on {}",
                state::path(&ws.root).display(),
                s.provider,
                s.provider
            ));
        }
        Ok(Session { ws, provider, lane, base_url, client, saved })
    }

    /// Checks the dataset against the provider's rules and prices it; the problems (file:line each) when it
    /// does not meet them. Sends nothing.
    pub fn plan(&self, o: &Options) -> Result<Plan, Vec<String>> {
        let (lane, mut notes) = (&self.lane, Vec::new());
        // OpenAI fine-tunes dated snapshots: a lane's alias (gpt-4o-mini) becomes the snapshot the table prices.
        let model = match (&o.base, self.provider.dialect) {
            (Some(b), _) => b.clone(),
            (None, client::Dialect::OpenAi) => match prices::training_snapshot(&lane.model) {
                Some(snap) if snap != lane.model => {
                    notes.push(format!(
                        "fine-tuning {snap}, the dated snapshot of lane `{}`'s {} (--base picks another)",
                        lane.id, lane.model
                    ));
                    snap
                }
                _ => lane.model.clone(),
            },
            (None, _) => lane.model.clone(),
        };
        let data = data::prepare(&self.ws, self.provider.rules)?;
        // OpenAI picks the epochs by dataset size when asked for "auto": the estimate spans 1 to 10; Together
        // and Fireworks run one unless told.
        let epochs = match (o.epochs, self.provider.dialect) {
            (Some(e), _) => (e, e),
            (None, client::Dialect::OpenAi) => (1, 10),
            (None, client::Dialect::Together | client::Dialect::Fireworks) => (1, 1),
        };
        let price = if self.provider.dialect == client::Dialect::OpenAi { prices::training(&model) } else { None };
        let estimate = match price {
            Some(p) => {
                let (lo, hi) = data::cost(data.train_tokens, epochs, p);
                if lo == hi {
                    format!("${lo:.2}")
                } else {
                    format!("${lo:.2}–${hi:.2} (epochs: the provider's choice, 1–10)")
                }
            }
            None => format!("unknown (no training price for `{model}` in tunebench's table)"),
        };
        Ok(Plan { model, data, estimate, notes, base_url: self.base_url.clone() })
    }

    /// Uploads the plan's files (the state saved after each, so a restart never uploads twice).
    pub async fn upload(
        &self,
        plan: &Plan,
        o: &Options,
        report: &mut (dyn FnMut(Report) + Send),
    ) -> Result<state::State, String> {
        let lane = &self.lane;
        let mut st = state::State {
            provider: self.provider.name.into(),
            base_url: self.base_url.clone(),
            model: plan.model.clone(),
            suffix: o.suffix.clone(),
            lane: lane.id.clone(),
            api_key_env: o
                .api_key_env
                .clone()
                .or_else(|| lane.api_key_env.clone())
                .unwrap_or_else(|| self.provider.key_env.into()),
            dataset_sha256: plan.data.sha256.clone(),
            started_at: super::now_iso(),
            account: o.account.clone(),
            deployment: o.deployment.clone(),
            ..Default::default()
        };
        let d = &plan.data;
        let train = self.client.upload("train.jsonl", d.train.as_bytes(), d.train_examples).await?;
        report(Report::Say(format!("uploaded train.jsonl: {train}")));
        st.training_file = Some(train);
        state::save(&self.ws.root, &st)?;
        if let Some(valid) = &d.valid {
            let v = self.client.upload("valid.jsonl", valid.as_bytes(), d.valid_examples).await?;
            report(Report::Say(format!("uploaded valid.jsonl: {v}")));
            st.validation_file = Some(v);
            state::save(&self.ws.root, &st)?;
        }
        Ok(st)
    }

    /// Creates the job for the uploaded files (the state saved with its id).
    pub async fn create(
        &self,
        o: &Options,
        st: &mut state::State,
        report: &mut (dyn FnMut(Report) + Send),
    ) -> Result<(), String> {
        let train = st.training_file.clone().ok_or("the state file names no training file")?;
        let (valid, suffix) = (st.validation_file.as_deref(), st.suffix.as_deref());
        let body = match self.client.dialect {
            client::Dialect::OpenAi => client::job_body(&st.model, &train, valid, suffix, o.epochs, o.lr_mult, o.seed),
            client::Dialect::Fireworks => super::fireworks::body(&st.model, &train, valid, suffix, o.epochs, o.rank),
            client::Dialect::Together => {
                client::together_body(&st.model, &train, valid, suffix, o.epochs, o.rank, o.alpha)
            }
        };
        let job = self.client.create(&body).await?;
        report(Report::Created { job: job.id.clone(), status: job.status.clone() });
        st.job_id = Some(job.id);
        st.status = Some(job.status);
        state::save(&self.ws.root, st)
    }

    /// Asks the provider to cancel job `id`; what it answered, as a line.
    pub async fn cancel(&self, id: &str) -> Result<String, String> {
        let job = self.client.cancel(id).await?;
        Ok(format!("asked to cancel job {id}: {}", job.status))
    }

    /// Reads the job until it ends, reporting new events and state changes; success writes the lane.
    pub async fn follow(
        &mut self,
        st: &mut state::State,
        poll: f64,
        report: &mut (dyn FnMut(Report) + Send),
    ) -> Result<Outcome, String> {
        let id = st.job_id.clone().ok_or("the state file names no job")?;
        let mut shown = std::collections::HashSet::new();
        loop {
            let job = self.client.job(&id).await?;
            let mut events = self.client.events(&id).await?;
            events.retain(|e| shown.insert(e.id.clone()));
            if !events.is_empty() {
                report(Report::Events(events));
            }
            if st.status.as_deref() != Some(job.status.as_str()) {
                report(Report::Status { job: id.clone(), status: job.status.clone() });
                st.status = Some(job.status.clone());
                state::save(&self.ws.root, st)?;
            }
            if job.finished() {
                return self.finished(st, &job, report).await;
            }
            tokio::time::sleep(super::poll(poll)).await;
        }
    }

    async fn finished(
        &mut self,
        st: &mut state::State,
        job: &client::Job,
        report: &mut (dyn FnMut(Report) + Send),
    ) -> Result<Outcome, String> {
        let outcome = match (job.succeeded(), &job.fine_tuned_model) {
            (true, Some(trained)) => {
                // Fireworks answers with a LoRA only once it is loaded onto a deployment.
                let model = match (self.client.dialect, &st.deployment) {
                    (client::Dialect::Fireworks, Some(d)) => {
                        report(Report::Say(format!("loading {trained} onto {d} …")));
                        let m = self.client.deploy(trained, d).await?;
                        report(Report::Say(format!("deployed: {m}")));
                        m
                    }
                    _ => trained.clone(),
                };
                let lane = super::lane_id(st.suffix.as_deref(), &job.id);
                // Only OpenAI's fine-tuned prices are in the table; Together bills a LoRA at its base's rate.
                let price = if st.provider == "openai" { prices::finetuned(&st.model) } else { None };
                super::write_lane(&mut self.ws, &lane, &self.lane, &model, price)?;
                st.outcome = Some(model.clone());
                Outcome::Succeeded {
                    job: job.id.clone(),
                    status: job.status.clone(),
                    model,
                    lane,
                    priced: price.is_some(),
                }
            }
            _ => {
                let status = job.status.clone();
                let why = job.error.clone().unwrap_or_else(|| format!("{status}, and no model named"));
                st.outcome = Some(why.clone());
                Outcome::Ended { job: job.id.clone(), status, why }
            }
        };
        state::finish(&self.ws.root, st)?;
        Ok(outcome)
    }
}
