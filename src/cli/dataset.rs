//! `tunebench dataset WORKSPACE …`: stats, split, check, export and import from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use crate::dataset::{self, Context, Dataset, Format, Severity, Split, SplitPlan};
use crate::metrics::Counters;
use crate::workspace::{self, Workspace};

#[derive(Debug, Subcommand)]
pub enum DatasetCmd {
    /// Examples and token lengths per split (in the adapter lane's tokenizer).
    Stats {
        /// One JSON object per split.
        #[arg(long)]
        json: bool,
    },
    /// Re-split every example into train/valid/test, deterministically for a seed (near-duplicates stay together).
    /// Data already split (valid or test hold examples) is re-split only with --yes or a yes in a terminal.
    Split {
        #[arg(long, default_value_t = 0.1)]
        valid: f64,
        #[arg(long, default_value_t = 0.1)]
        test: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Re-split data that is already split without asking.
        #[arg(long)]
        yes: bool,
        /// Only show what would move.
        #[arg(long, conflicts_with = "yes")]
        dry_run: bool,
    },
    /// Collapse identical copies of an example that an interrupted rewrite left; report ids shared by
    /// different examples (exits 1 while any remain).
    Repair,
    /// Duplicates and leaks across splits and into the long prompt's few-shot examples, role order, empty and
    /// over-long examples, system prompts; exits 1 on any error.
    Check {
        /// One JSON object per finding.
        #[arg(long)]
        json: bool,
    },
    /// Write a split in a trainer's format (OpenAI chat JSONL, Alpaca, ShareGPT).
    Export {
        #[arg(long, value_parser = ["openai", "alpaca", "sharegpt"])]
        format: String,
        #[arg(long)]
        out: PathBuf,
        /// train, valid, test or all.
        #[arg(long, default_value = "train")]
        split: String,
    },
    /// Add examples from a file in one of those formats (duplicates of present inputs are skipped and listed).
    Import {
        #[arg(long, value_parser = ["openai", "alpaca", "sharegpt"])]
        format: String,
        file: PathBuf,
        #[arg(long, default_value = "train")]
        split: String,
    },
}

pub fn run(path: &Path, cmd: DatasetCmd) -> anyhow::Result<ExitCode> {
    let ws = workspace::load(path)?;
    let dir = ws.dataset_dir();
    let ds = Dataset::load(&dir)?;
    for (s, m) in ds.malformed() {
        eprintln!("tunebench: {}:{}: not an example: {}", ds.path(s).display(), m.line, m.error);
    }
    match cmd {
        DatasetCmd::Stats { json } => stats(&ws, ds, json),
        DatasetCmd::Split { valid, test, seed, yes, dry_run } => {
            split(&ds, SplitPlan { valid, test, seed }, yes, dry_run)
        }
        DatasetCmd::Repair => {
            // Temporary files a killed write left go even when nothing else needs a write.
            workspace::store::remove_stale_temps(&dir);
            workspace::store::remove_stale_temps(&ws.root);
            let (_, healing) = ds.repair()?;
            report(&healing);
            if healing.is_empty() {
                println!("{}: no duplicated examples", dir.display());
            }
            Ok(if healing.conflicts.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        DatasetCmd::Check { json } => check(&ws, &ds, json),
        DatasetCmd::Export { format, out, split } => {
            let format = Format::parse(&format).context("unknown format")?;
            let splits = splits(&split)?;
            let examples: Vec<_> = ds.examples().filter(|(s, ..)| splits.contains(s)).map(|(_, x, _)| x).collect();
            let text = dataset::export(&examples, format, &out)?;
            workspace::store::write_atomic(&out, text.as_bytes())?;
            println!("exported {} {split} example(s) to {}", examples.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        DatasetCmd::Import { format, file, split } => import(&ws, ds, &format, &file, &split),
    }
}

/// What a repair collapsed (stdout) and the conflicts it left (stderr).
fn report(h: &dataset::Healing) {
    for line in &h.collapsed {
        println!("healed: {line}");
    }
    for line in &h.conflicts {
        eprintln!("tunebench: conflict: {line}");
    }
}

/// `split`: a first split is written at once; re-splitting data already split (valid or test hold
/// examples, perhaps curated by hand) shows what would move and needs --yes or a yes typed in a terminal.
/// Without either it changes nothing and exits 2.
fn split(ds: &Dataset, plan: SplitPlan, yes: bool, dry_run: bool) -> anyhow::Result<ExitCode> {
    let next = dataset::planned_split(ds, plan)?;
    let already = ds.count(Split::Valid) + ds.count(Split::Test) > 0;
    let moves = dataset::moves(ds, &next);
    let healing = ds.healing();
    if already || dry_run {
        let counts: Vec<String> =
            Split::ALL.iter().map(|&s| format!("{s} {} → {}", ds.count(s), next.count(s))).collect();
        println!("re-split (seed {}): {}; {} example(s) would move", plan.seed, counts.join(", "), moves.len());
        for (id, from, to) in &moves {
            println!("  {id:<16} {from} → {to}");
        }
        for line in &healing.collapsed {
            println!("  would heal: {line}");
        }
        if dry_run {
            return Ok(ExitCode::SUCCESS);
        }
        if moves.is_empty() && healing.collapsed.is_empty() {
            println!("already split this way: nothing to change");
            return Ok(ExitCode::SUCCESS);
        }
        if !yes && !confirm("re-split the dataset as above? [y/N] ")? {
            eprintln!(
                "tunebench: the dataset is already split (valid/test hold examples); nothing changed. --yes re-splits it"
            );
            return Ok(ExitCode::from(2));
        }
    }
    report(&healing);
    let written = ds.commit(next)?;
    let n: Vec<String> = Split::ALL.iter().map(|&s| format!("{s} {}", written.count(s))).collect();
    println!("split {} (seed {}): {}", ds.dir.display(), plan.seed, n.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// A yes typed in a terminal; without one (a script, CI) the answer is no.
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{IsTerminal, Write};
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Ok(false);
    }
    print!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn splits(name: &str) -> anyhow::Result<Vec<Split>> {
    if name == "all" {
        return Ok(Split::ALL.to_vec());
    }
    Split::parse(name).map(|s| vec![s]).with_context(|| format!("--split `{name}`: use train, valid, test or all"))
}

fn stats(ws: &Workspace, ds: Dataset, json: bool) -> anyhow::Result<ExitCode> {
    let ctx = Context::of(ws);
    let r = ctx.report(ds, &Counters::new());
    if json {
        for s in &r.stats.splits {
            println!("{}", serde_json::to_string(s)?);
        }
    } else {
        println!("{} — stored against the `{}` prompt", r.dataset.dir.display(), ctx.variant);
        match &r.measured_by {
            Ok(by) => println!("tokens per example in {by}"),
            Err(e) => println!("no token figures: {e}"),
        }
        print!("{}", r.stats.table());
    }
    if let Some(e) = &r.stats.tokens_error {
        eprintln!("tunebench: warning: token figures incomplete: {e}");
    }
    Ok(if r.stats.malformed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn check(ws: &Workspace, ds: &Dataset, json: bool) -> anyhow::Result<ExitCode> {
    let ctx = Context::of(ws);
    let m = ctx.measure(&Counters::new());
    if let Err(e) = &m {
        eprintln!("tunebench: warning: over-long examples not checked: {e}");
    }
    let findings = ctx.check(ds, m.as_ref().ok());
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    for f in &findings {
        let sev = if f.severity == Severity::Error { "error" } else { "warning" };
        if json {
            let line = serde_json::json!({"severity": sev, "kind": f.kind.name(), "at": f.at, "id": f.id, "message": f.message});
            println!("{line}");
        } else {
            println!(
                "{sev:<7} {:<13} {:<16} {:<13} {}",
                f.kind.name(),
                f.at,
                f.id.as_deref().unwrap_or("—"),
                f.message
            );
        }
    }
    if !json {
        let n: Vec<String> = Split::ALL.iter().map(|&s| format!("{s} {}", ds.count(s))).collect();
        println!(
            "{} example(s) checked ({}): {errors} error(s), {} warning(s)",
            ds.examples().count(),
            n.join(", "),
            findings.len() - errors
        );
    }
    Ok(if errors > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn import(ws: &Workspace, mut ds: Dataset, format: &str, file: &Path, split: &str) -> anyhow::Result<ExitCode> {
    let format = Format::parse(format).context("unknown format")?;
    let Some(split) = Split::parse(split) else { bail!("--split `{split}`: use train, valid or test") };
    // Import applies check's rules, the model's context included when the dataset lane's model can count.
    let measure = Context::of(ws).measure(&Counters::new());
    let count = |x: &dataset::Example| measure.as_ref().map_err(String::clone).and_then(|m| m.tokens(x));
    let length = match &measure {
        Ok(m) => m.context.map(|c| (&count as &dyn Fn(&dataset::Example) -> Result<usize, String>, c)),
        Err(e) => {
            eprintln!("tunebench: warning: lengths not checked against the model's context: {e}");
            None
        }
    };
    let (examples, filled) = dataset::import_checked(file, format, Some(ws.dataset_system_prompt()), length)?;
    let (added, skipped) = ds.append_all(split, examples)?;
    for why in &skipped {
        eprintln!("tunebench: skipped: {why}");
    }
    println!(
        "imported {} example(s) into {}; {} duplicate(s) skipped",
        added.len(),
        ds.path(split).display(),
        skipped.len()
    );
    if filled > 0 {
        println!(
            "{filled} record(s) had no system message and carry the `{}` prompt, as the dataset does",
            ws.dataset.system_prompt
        );
    }
    Ok(ExitCode::SUCCESS)
}
