//! `tunebench train WS --on openai|together|fireworks` on the command line: the flags, the plan printed and
//! confirmed on the terminal (or --yes), the job's progress printed, --cancel and --no-follow; the job itself
//! (rules, cost, uploads, following, the lane on success) is `finetune::job`'s.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::eval::Streams;
use super::train::TrainArgs;
use crate::engine::api::Env;
use crate::finetune::job::{self, Outcome, Report, Session};
use crate::finetune::{self, state};

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
    let o = options(args);
    let mut session = Session::open(path, &o, &env, h.cancel).map_err(anyhow::Error::msg)?;
    let root = session.ws.root.clone();
    let mut say = |r: Report| print(stderr, r);
    let mut st = match session.saved.take() {
        Some(s) => {
            say(Report::Say(format!(
                "resuming the {} job in {} (started {})",
                s.provider,
                state::path(&root).display(),
                s.started_at
            )));
            s
        }
        None if h.cancel => bail!("no job in progress in {} to cancel", root.display()),
        None => {
            let plan = match session.plan(&o) {
                Ok(p) => p,
                Err(problems) => {
                    writeln!(
                        stderr,
                        "the dataset does not meet {}'s fine-tuning rules; nothing was uploaded:",
                        o.provider.name
                    )?;
                    for p in &problems {
                        writeln!(stderr, "  {}", crate::visible::escape_line(p))?;
                    }
                    return Ok(2);
                }
            };
            for n in &plan.notes {
                writeln!(stderr, "{n}")?;
            }
            writeln!(stdout, "{}", plan.headline())?;
            if !h.yes && !confirmed(&mut confirm, stderr)? {
                return Ok(2);
            }
            session.upload(&plan, &o, &mut |r| print(stderr, r)).await.map_err(anyhow::Error::msg)?
        }
    };
    if st.job_id.is_none() {
        session.create(&o, &mut st, &mut |r| print(stderr, r)).await.map_err(anyhow::Error::msg)?;
    }
    let id = st.job_id.clone().context("the state file names no job")?;
    if h.cancel {
        writeln!(stderr, "{}", session.cancel(&id).await.map_err(anyhow::Error::msg)?)?;
    } else if h.no_follow {
        writeln!(stdout, "job {id} created; `tunebench train {} --on {}` follows it", root.display(), o.provider.name)?;
        return Ok(0);
    }
    let outcome = session.follow(&mut st, h.poll, &mut |r| print(stderr, r)).await.map_err(anyhow::Error::msg)?;
    writeln!(stdout, "{}", outcome.line())?;
    Ok(if matches!(outcome, Outcome::Succeeded { .. }) { 0 } else { 1 })
}

/// The job's options from the command line.
fn options(args: &TrainArgs) -> job::Options {
    let h = &args.hosted;
    job::Options {
        base: h.base.clone(),
        epochs: args.epochs.map(|e| e as u32),
        lr_mult: h.lr_mult,
        suffix: h.suffix.clone(),
        lane: h.lane.clone(),
        base_url: h.base_url.clone(),
        api_key_env: h.api_key_env.clone(),
        account: h.account.clone(),
        deployment: h.deployment.clone(),
        seed: args.seed,
        rank: args.rank,
        alpha: args.alpha,
        poll: h.poll,
        ..job::Options::new(h.on.map_or(finetune::OPENAI, Provider::spec))
    }
}

/// Asks on the terminal; false (said) when not confirmed or there is no terminal.
fn confirmed(
    confirm: &mut Option<&mut (dyn std::io::BufRead + Send)>,
    stderr: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<bool> {
    let Some(input) = confirm.as_mut() else {
        writeln!(stderr, "not confirmed: no terminal to ask on (pass --yes to upload); nothing was uploaded")?;
        return Ok(false);
    };
    write!(stderr, "Upload and start the job? [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    let yes = matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes");
    if !yes {
        writeln!(stderr, "not confirmed: nothing was uploaded")?;
    }
    Ok(yes)
}

/// A progress report as the CLI prints it (on stderr).
fn print(out: &mut (dyn std::io::Write + Send), r: Report) {
    match (r.line(), r) {
        (Some(line), _) => {
            let _ = writeln!(out, "{line}");
        }
        (None, Report::Events(events)) => finetune::show_events(out, &events),
        (None, _) => {}
    }
}

/// `tunebench train --on …` on the real terminal and environment.
pub async fn main(path: &Path, args: &TrainArgs) -> anyhow::Result<ExitCode> {
    super::eval::on_terminal(async |io| run(path, args, crate::engine::api::process_env(), io).await).await
}
