//! Run history: what identifies a run in runs.jsonl (content hashes), reading it back, and CSV export.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::Digest;

use crate::workspace::Workspace;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Content hashes that say exactly what a run ran: the system prompt's text and the adapter's files.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Provenance {
    pub prompt_sha256: String,
    /// sha256 over the adapter folder's adapter_config.json and weights; None without an adapter (or unreadable).
    pub adapter_sha256: Option<String>,
}

impl Provenance {
    pub fn of(ws: &Workspace, system_prompt: &str, adapter: Option<&str>) -> Self {
        let adapter_sha256 = adapter.and_then(|a| adapter_hash(&ws.resolve(a)));
        Self { prompt_sha256: sha256_hex(system_prompt.as_bytes()), adapter_sha256 }
    }
}

/// Adapter folders hashed once per modification: a run is recorded on the UI thread and adapters are megabytes.
fn adapter_hash(dir: &Path) -> Option<String> {
    static CACHE: Mutex<Option<HashMap<PathBuf, (SystemTime, String)>>> = Mutex::new(None);
    let files: Vec<PathBuf> = ["adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.is_file())
        .collect();
    let newest = files.iter().filter_map(|p| p.metadata().and_then(|m| m.modified()).ok()).max()?;
    let mut cache = CACHE.lock().ok()?;
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some((at, h)) = cache.get(dir)
        && *at == newest
    {
        return Some(h.clone());
    }
    let mut h = sha2::Sha256::new();
    for f in &files {
        h.update(std::fs::read(f).ok()?);
    }
    let digest = hex(&h.finalize());
    cache.insert(dir.to_path_buf(), (newest, digest.clone()));
    Some(digest)
}

/// The sampling settings a run used, as runs.jsonl, `runs --csv` and the eval reports record them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SamplingRecord {
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: Option<u32>,
    pub max_tokens: u32,
    pub seed: Option<u64>,
    pub repetition_penalty: f64,
}

impl From<&crate::workspace::Sampling> for SamplingRecord {
    fn from(s: &crate::workspace::Sampling) -> Self {
        Self {
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            max_tokens: s.max_tokens,
            seed: s.seed,
            repetition_penalty: s.repetition_penalty,
        }
    }
}

/// runs.jsonl read back: each record as JSON, and the lines that were not records (file:line: why).
pub fn read(path: &Path) -> std::io::Result<(Vec<serde_json::Value>, Vec<String>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    let mut records = Vec::new();
    let mut bad = Vec::new();
    // Line by line, so one damaged line (a write cut mid-character) costs that line only.
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(raw) else {
            bad.push(format!("{}:{}: not UTF-8", path.display(), i + 1));
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => records.push(v),
            Ok(_) => bad.push(format!("{}:{}: not a JSON object", path.display(), i + 1)),
            Err(e) => bad.push(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    Ok((records, bad))
}

/// UTC "YYYY-MM-DD HH:MM" from Unix milliseconds (civil-from-days, no time zone database needed).
pub fn utc_minute(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = crate::engine::local::template::civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

/// The run history's columns, shared by `tunebench runs` and F9's history view so both read alike: "prompt" is
/// the lane's prompt variant (as in lane titles), token counts say "tok".
pub const TABLE_HEAD: [&str; 8] =
    ["time (UTC)", "lane", "prompt", "prompt tok", "out tok", "ttft ms", "total ms", "cost"];

/// A record's cells under `TABLE_HEAD`: the date as F9 writes it, counts with separators, money as every view
/// writes it ("≈" where a count was estimated), "—" for what the record lacks.
pub fn table_cells(r: &serde_json::Value) -> [String; 8] {
    let dash = || "—".to_string();
    let text = |k: &str| r.get(k).and_then(serde_json::Value::as_str).map_or_else(dash, str::to_string);
    let approx = if r.get("estimated").and_then(serde_json::Value::as_bool) == Some(true) { "≈" } else { "" };
    let count = |k: &str| {
        r.get(k).and_then(serde_json::Value::as_u64).map_or_else(dash, |n| format!("{approx}{}", super::fmt_count(n)))
    };
    let ms = |k: &str| {
        r.get(k).and_then(serde_json::Value::as_f64).map_or_else(dash, |v| super::fmt_count(v.round() as u64))
    };
    let cost = r
        .get("cost_usd")
        .and_then(serde_json::Value::as_f64)
        .map_or_else(dash, |v| format!("{approx}{}", super::fmt_usd(Some(v))));
    [
        r.get("time_unix_ms").and_then(serde_json::Value::as_u64).map_or_else(dash, utc_minute),
        text("lane"),
        text("prompt_variant"),
        count("prompt_tokens"),
        count("completion_tokens"),
        ms("ttft_ms"),
        ms("total_ms"),
        cost,
    ]
}

/// Cells padded to the history table's columns (text left, figures right).
pub fn table_line<S: AsRef<str>>(cells: &[S]) -> String {
    const WIDTHS: [usize; 8] = [16, 10, 8, 10, 7, 8, 9, 9];
    let mut out = String::new();
    for (i, (c, w)) in cells.iter().zip(WIDTHS).enumerate() {
        let c = c.as_ref();
        out.push_str(&if i < 3 { format!("{c:<w$} ") } else { format!("{c:>w$} ") });
    }
    out.trim_end().to_string()
}

/// The CSV columns, in order (RFC 4180 quoting).
pub const CSV_COLUMNS: [&str; 27] = [
    "time_unix_ms",
    "lane",
    "backend",
    "model",
    "adapter",
    "prompt_variant",
    "prompt_sha256",
    "adapter_sha256",
    "input_sha256",
    "prompt_tokens",
    "completion_tokens",
    "cached_prompt_tokens",
    "estimated",
    "ttft_ms",
    "total_ms",
    "tokens_per_s",
    "cost_usd",
    "error",
    "input",
    "output",
    "reasoning_tokens",
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "seed",
    "repetition_penalty",
];

pub fn to_csv(records: &[serde_json::Value]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for r in records {
        let cells: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| match r.get(*c) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => quote(s),
                Some(v) => quote(&v.to_string()),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// One RFC 4180 field: quoted when it holds a comma, a quote or a line break.
pub fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let r = serde_json::json!({"lane": "a", "output": "x, \"y\"\nz", "prompt_tokens": 5, "error": null});
        let csv = to_csv(&[r]);
        let row = csv.lines().nth(1).unwrap();
        assert!(row.starts_with(",a,"), "{row}");
        assert!(csv.contains("\"x, \"\"y\"\"\nz\""), "{csv}");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(1_795_573_959_231), "2026-11-25 02:32");
        assert_eq!(utc_minute(951_782_400_000), "2000-02-29 00:00");
    }

    #[test]
    fn the_history_table_writes_dates_counts_and_money_one_way() {
        let r = serde_json::json!({"time_unix_ms": 1_795_573_959_231u64, "lane": "api", "prompt_variant": "long",
            "prompt_tokens": 1198, "completion_tokens": 52, "ttft_ms": 3120.4, "total_ms": 4140.0,
            "cost_usd": 0.00000634, "estimated": false});
        let cells = table_cells(&r);
        assert_eq!(
            cells,
            ["2026-11-25 02:32", "api", "long", "1,198", "52", "3,120", "4,140", "6.34 µ$"].map(String::from)
        );
        assert_eq!(table_cells(&serde_json::json!({}))[7], "—");
        assert!(table_line(&TABLE_HEAD).starts_with("time (UTC)       lane       prompt   prompt tok"));
    }

    #[test]
    fn damaged_lines_cost_only_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs.jsonl");
        std::fs::write(&p, b"{\"lane\":\"a\"}\n{\"lane\":\"\xff\"}\nnot json\n[1]\n\n{\"lane\":\"b\"}\n").unwrap();
        let (records, bad) = read(&p).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(
            bad[0].ends_with(":2: not UTF-8") && bad[1].contains(":3:") && bad[2].contains(":4: not a JSON object")
        );
    }
}
