//! `tunebench runs`: the workspace's run history as a table or CSV.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::workspace;

/// `tunebench runs`: lines that are not records are named on stderr, never dropped silently.
pub(super) fn runs(path: &Path, csv: bool) -> anyhow::Result<ExitCode> {
    use crate::metrics::history;
    let ws = workspace::load(path)?;
    let file = ws.runs_path();
    let (records, bad) = history::read(&file).with_context(|| format!("reading {}", file.display()))?;
    for b in &bad {
        eprintln!("tunebench: skipped {b}");
    }
    if csv {
        print!("{}", history::to_csv(&records));
        return Ok(ExitCode::SUCCESS);
    }
    let field = |r: &serde_json::Value, k: &str| match r.get(k) {
        None | Some(serde_json::Value::Null) => "—".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    println!(
        "{:<14} {:<8} {:>7} {:>6} {:>9} {:>9} {:>10}  error",
        "time (unix s)", "lane", "prompt", "out", "ttft ms", "total ms", "cost $"
    );
    for r in &records {
        let secs = r
            .get("time_unix_ms")
            .and_then(serde_json::Value::as_u64)
            .map_or("—".into(), |ms| (ms / 1000).to_string());
        println!(
            "{secs:<14} {:<8} {:>7} {:>6} {:>9} {:>9} {:>10}  {}",
            field(r, "lane"),
            field(r, "prompt_tokens"),
            field(r, "completion_tokens"),
            field(r, "ttft_ms"),
            field(r, "total_ms"),
            field(r, "cost_usd"),
            r.get("error").and_then(|e| e.as_str()).unwrap_or("")
        );
    }
    println!("{} run(s) in {}", records.len(), file.display());
    Ok(ExitCode::SUCCESS)
}
