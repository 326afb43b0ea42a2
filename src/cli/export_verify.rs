//! `tunebench export … --verify`: serves the export with llama-server and prints the round trip's verdict:
//! the two lanes' pass rates, identical answers, where each other answer first differs; exit 1 past a limit.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;

use super::export::ExportArgs;
use crate::engine::Registry;
use crate::engine::local::prompt::PromptTokenizer;
use crate::export::verify::{self, AGREE_TOKENS};
use crate::workspace::{LaneSpec, Workspace};

pub async fn verify(
    ws: &Workspace,
    lane: &LaneSpec,
    base: &Path,
    model: &Path,
    lora: Option<&Path>,
    args: &ExportArgs,
) -> anyhow::Result<ExitCode> {
    for (name, v) in [("--min-agree", args.min_agree), ("--max-drop", args.max_drop)] {
        if !(0.0..=1.0).contains(&v) {
            bail!("{name} {v}: give a share from 0 to 1");
        }
    }
    let bin = verify::find_server(args.server.as_deref()).map_err(anyhow::Error::msg)?;
    let idx = ws.lanes.iter().position(|l| l.id == lane.id).unwrap_or_default();
    let log = args.out.join("llama-server.log");
    eprintln!("verify: serving {} with {} (log: {})", lora.unwrap_or(model).display(), bin.display(), log.display());
    let served = verify::serve(&bin, model, lora, &log).await.map_err(anyhow::Error::msg)?;
    let tokenizer = PromptTokenizer::open(base)?.tokenizer;
    let limit = args.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut err = std::io::stderr();
    let tty = std::io::IsTerminal::is_terminal(&err);
    let mut progress = |done: usize, total: usize| {
        // A terminal redraws one line; a log gets a line every tenth of the runs.
        if tty {
            let _ = write!(err, "\rverify: {done}/{total} runs");
            let _ = err.flush();
        } else if done.is_multiple_of((total / 10).max(1)) || done == total {
            let _ = writeln!(err, "verify: {done}/{total} runs");
        }
    };
    let v = verify::compare(ws, idx, &served, &tokenizer, limit, Registry::builtin(), &mut progress)
        .await
        .map_err(anyhow::Error::msg)?;
    drop(served);
    if tty {
        eprintln!();
    }
    println!(
        "round trip over {} test case(s): lane `{}` in tunebench {:.1}% pass, served by llama-server {:.1}% pass",
        v.cases,
        lane.id,
        v.in_process_pass * 100.0,
        v.served_pass * 100.0
    );
    println!(
        "identical answers: {}/{} ({:.0}%); agreeing on the first {AGREE_TOKENS} tokens: {}/{} ({:.0}%)",
        v.identical,
        v.cases,
        v.identical as f64 * 100.0 / v.cases.max(1) as f64,
        v.agree,
        v.cases,
        v.agree as f64 * 100.0 / v.cases.max(1) as f64
    );
    for m in &v.mismatches {
        println!(
            "  case {}: first differs at token {}: tunebench {:?}, llama-server {:?}",
            m.case,
            m.at,
            crate::visible::escape_line(&m.in_process),
            crate::visible::escape_line(&m.served)
        );
    }
    for e in &v.errors {
        println!("  {}", crate::visible::escape_line(e));
    }
    let failures = v.failures(args.min_agree, args.max_drop);
    if failures.is_empty() {
        println!("verified: the served export answers as the adapter lane does");
        return Ok(ExitCode::SUCCESS);
    }
    for f in &failures {
        println!("NOT verified: {f}");
    }
    Ok(ExitCode::from(1))
}
