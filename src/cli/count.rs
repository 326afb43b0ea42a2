//! `tunebench count` and `tunebench tokenize`: prompt sizes in each lane's own tokenizer, without running.

use std::path::Path;
use std::process::ExitCode;

use crate::workspace;

pub(super) fn tokenize(model: &Path, show_ids: bool, parse_special: bool, text: &str) -> anyhow::Result<ExitCode> {
    let tok = crate::engine::local::tokenizer::Tokenizer::open(model)?;
    let ids = tok.encode(text, parse_special)?;
    println!("{}", ids.len());
    if show_ids {
        println!("{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tunebench count`: one line per lane; exits 1 when a lane could not be counted.
pub(super) async fn count(path: &Path, input: String, json: bool, exact: bool) -> anyhow::Result<ExitCode> {
    let ws = workspace::load(path)?;
    let mut counts = crate::metrics::Counters::new().count_all(&ws, &input);
    if exact {
        let env = crate::engine::api::process_env();
        for (lane, c) in ws.lanes.iter().zip(counts.iter_mut()) {
            if lane.backend == workspace::BackendKind::Anthropic {
                let system = ws.prompt_text(&lane.prompt).unwrap_or_default();
                // Unreachable or refused: keep the ≈ estimate, and say why the exact figure is missing.
                match crate::engine::api::count_tokens::anthropic(lane, &env, system, &input).await {
                    Ok(n) => {
                        *c = Ok(crate::metrics::Count {
                            tokens: n,
                            estimated: false,
                            how: "count_tokens endpoint".into(),
                        })
                    }
                    Err(e) => eprintln!(
                        "tunebench: warning: lane `{}`: {}; showing the estimate",
                        lane.id,
                        crate::visible::escape_line(&e)
                    ),
                }
            }
        }
    }
    let mut failed = false;
    for (lane, c) in ws.lanes.iter().zip(counts) {
        failed |= c.is_err();
        if json {
            let (tokens, estimated, error) = match &c {
                Ok(c) => (Some(c.tokens), c.estimated, None),
                Err(e) => (None, false, Some(e.as_str())),
            };
            #[derive(serde::Serialize)]
            struct Line<'a> {
                lane: &'a str,
                prompt_tokens: Option<u64>,
                estimated: bool,
                error: Option<&'a str>,
            }
            let line = Line { lane: &lane.id, prompt_tokens: tokens, estimated, error };
            println!("{}", crate::visible::json(serde_json::to_string(&line)?));
        } else {
            match c {
                Ok(c) => println!("{:<16} {:>9}  {}", lane.id, crate::metrics::fmt_count(c.tokens), c.how),
                Err(e) => println!("{:<16} {:>9}  {}", lane.id, "?", crate::visible::escape_line(&e)),
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
