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
    // The same table as F9's history view (h): UTC dates, counts with separators, money written one way.
    println!("{}  error", history::table_line(&history::TABLE_HEAD));
    for r in &records {
        let error = r.get("error").and_then(|e| e.as_str()).unwrap_or("");
        println!("{}", format!("{}  {error}", history::table_line(&history::table_cells(r))).trim_end());
    }
    println!("{} run(s) in {}", records.len(), file.display());
    Ok(ExitCode::SUCCESS)
}
