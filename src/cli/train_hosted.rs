//! `tunebench train WS --on openai|together`: the dataset checked against the provider's rules, the training cost
//! estimated and confirmed, the files uploaded, the job created and followed (its events and losses), resumed
//! from the workspace's state file after a restart, cancelled with --cancel; on success a lane for the model.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::eval::Streams;
use super::train::TrainArgs;
use crate::engine::api::Env;
use crate::finetune::{self, client, data, state};
use crate::metrics::prices;
use crate::workspace;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI's fine-tuning API (files, fine_tuning/jobs).
    Openai,
    /// Together's (files/upload, fine-tunes): a LoRA at tunebench's rank and alpha, served as the job's
    /// output model.
    Together,
    /// Fireworks' (datasets and supervisedFineTuningJobs under accounts/ID; --account, --deployment).
    Fireworks,
}

impl Provider {
    fn spec(self) -> finetune::Provider {
        match self {
            Provider::Openai => finetune::OPENAI,
            Provider::Together => finetune::TOGETHER,
            Provider::Fireworks => finetune::FIREWORKS,
        }
    }
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct HostedArgs {
    /// Fine-tune on a provider's servers instead of this machine.
    #[arg(long, value_enum)]
    pub on: Option<Provider>,
    /// --on: the model to fine-tune (default: the provider lane's model).
    #[arg(long, requires = "on")]
    pub base: Option<String>,
    /// --on: the learning-rate multiplier (default: the provider's choice).
    #[arg(long, requires = "on")]
    pub lr_mult: Option<f64>,
    /// --on: up to 64 letters, digits, - or _ in the model's name (and the lane's id, ft-SUFFIX).
    #[arg(long, requires = "on")]
    pub suffix: Option<String>,
    /// --on: the lane whose base_url and api_key_env the job uses (default: the OpenAI lane).
    #[arg(long, requires = "on")]
    pub lane: Option<String>,
    /// --on: the API's base URL, in place of the lane's.
    #[arg(long, requires = "on")]
    pub base_url: Option<String>,
    /// --on: the environment variable holding the key, in place of the lane's.
    #[arg(long, requires = "on")]
    pub api_key_env: Option<String>,
    /// --on: upload without asking about the cost.
    #[arg(long, requires = "on")]
    pub yes: bool,
    /// --on: cancel the job in progress.
    #[arg(long, requires = "on")]
    pub cancel: bool,
    /// --on: create the job and return (a later `train --on` follows it).
    #[arg(long, requires = "on")]
    pub no_follow: bool,
    /// --on: seconds between reads of a running job.
    #[arg(long, default_value_t = 10.0)]
    pub poll: f64,
    /// --on fireworks: the account id its datasets, jobs and models live under.
    #[arg(long, requires = "on")]
    pub account: Option<String>,
    /// --on fireworks: the deployment (accounts/ID/deployments/NAME, with LoRA add-ons enabled) the new LoRA is
    /// loaded onto before the lane asks it (Fireworks serves customers' LoRAs on deployments, not serverless).
    #[arg(long, requires = "on")]
    pub deployment: Option<String>,
}

pub async fn run(path: &Path, args: &TrainArgs, env: Env, io: Streams<'_>) -> anyhow::Result<u8> {
    let Streams { stdout, stderr, mut confirm, .. } = io;
    let h = &args.hosted;
    if let Some(name) = args.local_options_given() {
        bail!("{name} is for training on this machine; with --on the provider trains");
    }
    if let Some(s) = &h.suffix {
        finetune::check_suffix(s).map_err(anyhow::Error::msg)?;
    }
    let mut ws = workspace::load(path)?;
    let provider = h.on.map_or(finetune::OPENAI, Provider::spec);
    let lane = finetune::provider_lane(&ws, &provider, h.lane.as_deref()).map_err(anyhow::Error::msg)?.clone();
    // Fireworks fine-tunes under its management API, not the inference URL its lanes name.
    let base_url = h
        .base_url
        .clone()
        .or_else(|| provider.manage.map(String::from))
        .or_else(|| lane.base_url.clone())
        .unwrap_or_else(|| provider.base.into());
    let key = finetune::key(&lane, &provider, h.api_key_env.as_deref(), &env)
        .map_err(|e| anyhow::anyhow!("lane `{}`: {e}", lane.id))?;
    let mut client =
        client::Client::new(provider.dialect, &base_url, key, lane.api.max_retries).map_err(anyhow::Error::msg)?;
    let saved = state::load(&ws.root).map_err(anyhow::Error::msg)?;
    client.account = saved.as_ref().and_then(|s| s.account.clone()).or_else(|| h.account.clone());
    if provider.dialect == client::Dialect::Fireworks
        && saved.is_none()
        && !h.cancel
        && (h.account.is_none() || h.deployment.is_none())
    {
        bail!(
            "--on fireworks needs --account ID and --deployment accounts/ID/deployments/NAME (a deployment with LoRA \
             add-ons: Fireworks serves customers' LoRAs there, not serverless); nothing was uploaded"
        );
    }
    let mut st = match saved {
        Some(s) if s.provider != provider.name => {
            bail!(
                "the job in progress in {} is on {}: follow it with --on {}",
                state::path(&ws.root).display(),
                s.provider,
                s.provider
            )
        }
        Some(s) => {
            writeln!(
                stderr,
                "resuming the {} job in {} (started {})",
                s.provider,
                state::path(&ws.root).display(),
                s.started_at
            )?;
            s
        }
        None if h.cancel => bail!("no job in progress in {} to cancel", ws.root.display()),
        None => match start(&ws, args, &provider, &lane, &base_url, &client, stdout, stderr, &mut confirm).await? {
            Some(s) => s,
            None => return Ok(2),
        },
    };
    if st.job_id.is_none() {
        create(&ws, args, &client, &mut st, stderr).await?;
    }
    let id = st.job_id.clone().context("the state file names no job")?;
    if h.cancel {
        let job = client.cancel(&id).await.map_err(anyhow::Error::msg)?;
        writeln!(stderr, "asked to cancel job {id}: {}", job.status)?;
    } else if h.no_follow {
        writeln!(
            stdout,
            "job {id} created; `tunebench train {} --on {}` follows it",
            ws.root.display(),
            provider.name
        )?;
        return Ok(0);
    }
    follow(&mut ws, &lane, &client, &mut st, h.poll, stdout, stderr).await
}

/// Checks, prices and confirms, then uploads (saving the state after each file); None when refused before
/// any upload (exit 2).
#[allow(clippy::too_many_arguments)] // the command's whole context
async fn start(
    ws: &workspace::Workspace,
    args: &TrainArgs,
    provider: &finetune::Provider,
    lane: &workspace::LaneSpec,
    base_url: &str,
    client: &client::Client,
    stdout: &mut (dyn std::io::Write + Send),
    stderr: &mut (dyn std::io::Write + Send),
    confirm: &mut Option<&mut (dyn std::io::BufRead + Send)>,
) -> anyhow::Result<Option<state::State>> {
    let h = &args.hosted;
    // OpenAI fine-tunes dated snapshots: a lane's alias (gpt-4o-mini) becomes the snapshot the table prices.
    let model = match (&h.base, provider.dialect) {
        (Some(b), _) => b.clone(),
        (None, client::Dialect::OpenAi) => match prices::training_snapshot(&lane.model) {
            Some(snap) if snap != lane.model => {
                writeln!(
                    stderr,
                    "fine-tuning {snap}, the dated snapshot of lane `{}`'s {} (--base picks another)",
                    lane.id, lane.model
                )?;
                snap
            }
            _ => lane.model.clone(),
        },
        (None, _) => lane.model.clone(),
    };
    let prepared = match data::prepare(ws, provider.rules) {
        Ok(p) => p,
        Err(problems) => {
            writeln!(stderr, "the dataset does not meet {}'s fine-tuning rules; nothing was uploaded:", provider.name)?;
            for p in &problems {
                writeln!(stderr, "  {}", crate::visible::escape_line(p))?;
            }
            return Ok(None);
        }
    };
    // OpenAI picks the epochs by dataset size when asked for "auto": the estimate spans 1 to 10; Together and
    // Fireworks run one unless told.
    let epochs = match (args.epochs, provider.dialect) {
        (Some(e), _) => (e as u32, e as u32),
        (None, client::Dialect::OpenAi) => (1, 10),
        (None, client::Dialect::Together | client::Dialect::Fireworks) => (1, 1),
    };
    let price = if provider.dialect == client::Dialect::OpenAi { prices::training(&model) } else { None };
    let estimate = match price {
        Some(p) => {
            let (lo, hi) = data::cost(prepared.train_tokens, epochs, p);
            if lo == hi {
                format!("${lo:.2}")
            } else {
                format!("${lo:.2}–${hi:.2} (epochs: the provider's choice, 1–10)")
            }
        }
        None => format!("unknown (no training price for `{model}` in tunebench's table)"),
    };
    writeln!(
        stdout,
        "fine-tune {model} on {}: {} training example(s), {} validation, {} tokens an epoch (o200k); training cost {estimate}",
        base_url, prepared.train_examples, prepared.valid_examples, prepared.train_tokens
    )?;
    if !h.yes {
        let Some(input) = confirm.as_mut() else {
            writeln!(stderr, "not confirmed: no terminal to ask on (pass --yes to upload); nothing was uploaded")?;
            return Ok(None);
        };
        write!(stderr, "Upload and start the job? [y/N] ")?;
        stderr.flush()?;
        let mut answer = String::new();
        input.read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            writeln!(stderr, "not confirmed: nothing was uploaded")?;
            return Ok(None);
        }
    }
    let mut st = state::State {
        provider: provider.name.into(),
        base_url: base_url.to_string(),
        model,
        suffix: h.suffix.clone(),
        lane: lane.id.clone(),
        api_key_env: h
            .api_key_env
            .clone()
            .or_else(|| lane.api_key_env.clone())
            .unwrap_or_else(|| provider.key_env.into()),
        dataset_sha256: prepared.sha256.clone(),
        started_at: finetune::now_iso(),
        ..Default::default()
    };
    st.account = h.account.clone();
    st.deployment = h.deployment.clone();
    let train = client
        .upload("train.jsonl", prepared.train.as_bytes(), prepared.train_examples)
        .await
        .map_err(anyhow::Error::msg)?;
    writeln!(stderr, "uploaded train.jsonl: {train}")?;
    st.training_file = Some(train);
    state::save(&ws.root, &st).map_err(anyhow::Error::msg)?;
    if let Some(valid) = &prepared.valid {
        let v = client
            .upload("valid.jsonl", valid.as_bytes(), prepared.valid_examples)
            .await
            .map_err(anyhow::Error::msg)?;
        writeln!(stderr, "uploaded valid.jsonl: {v}")?;
        st.validation_file = Some(v);
        state::save(&ws.root, &st).map_err(anyhow::Error::msg)?;
    }
    Ok(Some(st))
}

async fn create(
    ws: &workspace::Workspace,
    args: &TrainArgs,
    client: &client::Client,
    st: &mut state::State,
    stderr: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let train = st.training_file.clone().context("the state file names no training file")?;
    let epochs = args.epochs.map(|e| e as u32);
    let body = match client.dialect {
        client::Dialect::OpenAi => client::job_body(
            &st.model,
            &train,
            st.validation_file.as_deref(),
            st.suffix.as_deref(),
            epochs,
            args.hosted.lr_mult,
            args.seed,
        ),
        client::Dialect::Fireworks => finetune::fireworks::body(
            &st.model,
            &train,
            st.validation_file.as_deref(),
            st.suffix.as_deref(),
            epochs,
            args.rank,
        ),
        client::Dialect::Together => client::together_body(
            &st.model,
            &train,
            st.validation_file.as_deref(),
            st.suffix.as_deref(),
            epochs,
            args.rank,
            args.alpha,
        ),
    };
    let job = client.create(&body).await.map_err(anyhow::Error::msg)?;
    writeln!(stderr, "job {} created ({})", job.id, job.status)?;
    st.job_id = Some(job.id);
    st.status = Some(job.status);
    state::save(&ws.root, st).map_err(anyhow::Error::msg)
}

/// Reads the job until it ends, printing its new events; success writes the lane. Exit 0 on success, 1 on a
/// failed or cancelled job.
async fn follow(
    ws: &mut workspace::Workspace,
    lane: &workspace::LaneSpec,
    client: &client::Client,
    st: &mut state::State,
    poll: f64,
    stdout: &mut (dyn std::io::Write + Send),
    stderr: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<u8> {
    let id = st.job_id.clone().context("no job id")?;
    let (mut last_event, mut seen): (Option<String>, usize) = (None, 0);
    loop {
        let job = client.job(&id).await.map_err(anyhow::Error::msg)?;
        let events = client.events(&id, last_event.as_deref(), seen).await.map_err(anyhow::Error::msg)?;
        if let Some(e) = events.last() {
            last_event = Some(e.id.clone());
        }
        seen += events.len();
        finetune::show_events(stderr, &events);
        if st.status.as_deref() != Some(job.status.as_str()) {
            writeln!(stderr, "job {id}: {}", job.status)?;
            st.status = Some(job.status.clone());
            state::save(&ws.root, st).map_err(anyhow::Error::msg)?;
        }
        if job.finished() {
            return finished(ws, lane, client, st, &job, stdout, stderr).await;
        }
        tokio::time::sleep(finetune::poll(poll)).await;
    }
}

async fn finished(
    ws: &mut workspace::Workspace,
    lane: &workspace::LaneSpec,
    client: &client::Client,
    st: &mut state::State,
    job: &client::Job,
    stdout: &mut (dyn std::io::Write + Send),
    stderr: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<u8> {
    let code = match (job.succeeded(), &job.fine_tuned_model) {
        (true, Some(trained)) => {
            // Fireworks answers with a LoRA only once it is loaded onto a deployment.
            let model = match (client.dialect, &st.deployment) {
                (client::Dialect::Fireworks, Some(d)) => {
                    writeln!(stderr, "loading {trained} onto {d} …")?;
                    let m = client.deploy(trained, d).await.map_err(anyhow::Error::msg)?;
                    writeln!(stderr, "deployed: {m}")?;
                    m
                }
                _ => trained.clone(),
            };
            let model = &model;
            let id = finetune::lane_id(st.suffix.as_deref(), &job.id);
            // Only OpenAI's fine-tuned prices are in the table; Together bills a LoRA at its base's rate.
            let price = if st.provider == "openai" { prices::finetuned(&st.model) } else { None };
            finetune::write_lane(ws, &id, lane, model, price).map_err(anyhow::Error::msg)?;
            let priced = if price.is_some() { "with its price" } else { "price unknown (add [pricing] for it)" };
            writeln!(stdout, "job {} {}: {model}; lane `{id}` asks it ({priced})", job.id, job.status)?;
            st.outcome = Some(model.clone());
            0
        }
        (_, _) => {
            let status = job.status.as_str();
            let why = job.error.clone().unwrap_or_else(|| format!("{status}, and no model named"));
            writeln!(stdout, "job {} {status}: {}", job.id, crate::visible::escape_line(&why))?;
            st.outcome = Some(why);
            1
        }
    };
    state::finish(&ws.root, st).map_err(anyhow::Error::msg)?;
    Ok(code)
}

/// `tunebench train --on …` on the real terminal and environment.
pub async fn main(path: &Path, args: &TrainArgs) -> anyhow::Result<ExitCode> {
    super::eval::on_terminal(async |io| run(path, args, crate::engine::api::process_env(), io).await).await
}
