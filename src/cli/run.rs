//! `tunebench run`: lanes on one input without a terminal, as text or one JSON line per lane. Text mode shows
//! what the model and the server wrote with control characters escaped; JSON keeps it as sent, JSON-escaped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::{headless, read_input};
use crate::engine::Registry;
use crate::metrics::{fmt_count, fmt_duration, fmt_usd};
use crate::theme::Theme;
use crate::visible::{escape, escape_line};
use crate::workspace;

pub(super) async fn run(
    path: &Path,
    input: Option<String>,
    input_file: Option<PathBuf>,
    lanes: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let ws = workspace::load(path)?;
    // The theme is the TUI's, but a broken one is still an error here rather than a surprise later.
    Theme::choose(None, &ws)?;
    let input = read_input(input, input_file)?;
    let chosen = headless::select_lanes(&ws, lanes).map_err(anyhow::Error::msg)?;
    let mut warn = |w: &str| eprintln!("tunebench: warning: {}", escape(w));
    let headless::Finished { reports, .. } =
        headless::run_with(&ws, &input, &chosen, Registry::builtin(), &mut warn).await;
    for r in &reports {
        if json {
            println!("{}", r.to_json());
        } else {
            println!("── {} · {} · {} · {}", r.lane, r.prompt_variant, r.model, r.backend);
            if !r.output.is_empty() {
                println!("{}", escape(&r.output));
            }
            // The TUI's formats: money one way everywhere, times as the footers show them.
            let dash = || "—".to_string();
            let approx = if r.estimated { "≈" } else { "" };
            let ms = |v: Option<f64>| v.map_or_else(dash, |x| fmt_duration(Duration::from_secs_f64(x / 1000.0)));
            println!(
                "in {} · out {} · ttft {} · total {} · {} tok/s · cost {}",
                r.prompt_tokens.map_or_else(dash, |n| format!("{approx}{}", fmt_count(n))),
                r.completion_tokens.map_or_else(dash, |n| format!("{approx}{}", fmt_count(n))),
                ms(r.ttft_ms),
                ms(r.total_ms),
                r.tokens_per_s.map_or_else(dash, |x| format!("{x:.1}")),
                r.cost_usd.map_or_else(dash, |c| fmt_usd(Some(c))),
            );
            if let Some(e) = &r.error {
                println!("error: {}", escape(e));
            }
            println!();
        }
    }
    let failed: Vec<String> =
        reports.iter().filter_map(|r| r.error.as_ref().map(|e| format!("{} ({})", r.lane, escape_line(e)))).collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("tunebench: {} of {} lane(s) failed: {}", failed.len(), reports.len(), failed.join("; "));
        Ok(ExitCode::from(1))
    }
}
