//! How numbers are written, in one place: counts, durations and money, their compact forms, and fitting
//! labelled fields or table columns into a width by dropping whole fields, never by cutting a number.

/// `1,204`
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A value rounded to three significant figures, and the decimals that show exactly those figures.
fn sig3(v: f64) -> (f64, usize) {
    if v == 0.0 || !v.is_finite() {
        return (v, 0);
    }
    let scale = 10f64.powi(2 - v.abs().log10().floor() as i32);
    let rounded = (v * scale).round() / scale;
    // Rounding can carry into the next power of ten (999.6 → 1000): the decimals follow the rounded value.
    let decimals = (2 - rounded.abs().log10().floor() as i32).max(0) as usize;
    (rounded, decimals)
}

/// A count in at most five characters plus its unit: exact below 10,000, else three figures with k, M or G
/// (`9,999`, `133 k`, `1.18 M`).
pub fn fmt_count_compact(n: u64) -> String {
    if n < 10_000 {
        return fmt_count(n);
    }
    let (r, _) = sig3(n as f64);
    let (v, unit) = match r {
        r if r < 1e6 => (r / 1e3, "k"),
        r if r < 1e9 => (r / 1e6, "M"),
        r => (r / 1e9, "G"),
    };
    let (v, d) = sig3(v);
    format!("{v:.d$} {unit}")
}

/// `840ms`, `3.10s`, `2m05s`
pub fn fmt_duration(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 60_000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// A remaining or elapsed time as a clock: `0:42`, `12:05`, `1:02:09`.
pub fn fmt_clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Money, the one way every view and report writes it: under $0.001 in micro-dollars (`6.34 µ$`), under $1 to
/// three significant figures (`$0.000222` is `222 µ$`; `$0.0222`), to the cent up to a million (`$18.78`,
/// `$1,240.00`), then in millions (`$1.24 M`). Negative amounts carry a minus sign (`−$3.05`).
pub fn fmt_usd_nanos(nanos: i64) -> String {
    let sign = if nanos < 0 { "−" } else { "" };
    let n = nanos.unsigned_abs();
    if n == 0 {
        return "$0".into();
    }
    let usd = n as f64 / 1e9;
    let (r, d) = sig3(usd);
    if r < 0.001 {
        let (v, d) = sig3(usd * 1e6);
        format!("{sign}{v:.d$} µ$")
    } else if r < 1.0 {
        format!("{sign}${r:.d$}")
    } else if usd < 999_999.995 {
        let cents = (n as f64 / 1e7).round() as u64;
        format!("{sign}${}.{:02}", fmt_count(cents / 100), cents % 100)
    } else {
        let (v, d) = sig3(usd / 1e6);
        format!("{sign}${v:.d$} M")
    }
}

/// A cost that cannot be negative, as `fmt_usd_nanos` writes it.
pub fn fmt_cost_nanos(n: u64) -> String {
    fmt_usd_nanos(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Dollars as `fmt_usd_nanos` writes them; "?" when unknown.
pub fn fmt_usd(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| fmt_usd_nanos((v * 1e9).round() as i64))
}

/// One labelled figure of a status line: its full and compact text, and how soon it is dropped (0 last).
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub full: String,
    pub compact: String,
    pub priority: u8,
}

impl Field {
    pub fn new(full: impl Into<String>, priority: u8) -> Self {
        let full = full.into();
        Self { compact: full.clone(), full, priority }
    }

    pub fn compact(mut self, compact: impl Into<String>) -> Self {
        self.compact = compact.into();
        self
    }
}

/// The fields joined by `sep` in at most `width` characters: full forms, else compact ones, else without the
/// lowest-priority fields (an `…` says some were left out). A field is shown whole or not at all.
pub fn fit(fields: &[Field], sep: &str, width: usize) -> String {
    let join = |keep: &[bool], compact: bool| -> String {
        let parts: Vec<&str> = fields
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(f, _)| if compact { f.compact.as_str() } else { f.full.as_str() })
            .collect();
        parts.join(sep)
    };
    let mut keep = vec![true; fields.len()];
    let full = join(&keep, false);
    if full.chars().count() <= width {
        return full;
    }
    let mut order: Vec<usize> = (0..fields.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(fields[i].priority));
    for drop in std::iter::once(None).chain(order.into_iter().map(Some)) {
        if let Some(i) = drop {
            keep[i] = false;
        }
        let line = join(&keep, true);
        let dropped = keep.iter().any(|k| !k);
        let line = if dropped && !line.is_empty() { format!("{line} …") } else { line };
        if line.chars().count() <= width || keep.iter().all(|k| !k) {
            return if line.chars().count() <= width { line } else { String::new() };
        }
    }
    String::new()
}

/// A table in `width` characters: columns padded to their widest cell, two spaces apart; full cells, else the
/// compact ones, else without the columns of lowest priority (`priority[c]`, 0 kept longest).
pub fn fit_table(
    head: &[&str],
    full: &[Vec<String>],
    compact: &[Vec<String>],
    priority: &[u8],
    width: usize,
) -> Vec<String> {
    let render = |rows: &[Vec<String>], keep: &[bool]| -> Vec<String> {
        let cols: Vec<usize> = (0..head.len()).filter(|&c| keep[c]).collect();
        let mut widths: Vec<usize> = cols.iter().map(|&c| head[c].chars().count()).collect();
        for r in rows {
            for (w, &c) in widths.iter_mut().zip(&cols) {
                *w = (*w).max(r.get(c).map_or(0, |s| s.chars().count()));
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out = vec![line(cols.iter().map(|&c| head[c]).collect())];
        out.extend(rows.iter().map(|r| line(cols.iter().map(|&c| r.get(c).map_or("", String::as_str)).collect())));
        out
    };
    let fits = |lines: &[String]| lines.iter().all(|l| l.chars().count() <= width);
    let mut keep = vec![true; head.len()];
    let lines = render(full, &keep);
    if fits(&lines) {
        return lines;
    }
    let mut order: Vec<usize> = (0..head.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(priority.get(c).copied().unwrap_or(u8::MAX)));
    let mut lines = render(compact, &keep);
    for c in order {
        if fits(&lines) || keep.iter().filter(|k| **k).count() <= 1 {
            break;
        }
        keep[c] = false;
        lines = render(compact, &keep);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1204), "1,204");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
    }

    #[test]
    fn compact_counts_keep_their_magnitude() {
        assert_eq!(fmt_count_compact(9_999), "9,999");
        assert_eq!(fmt_count_compact(133_121), "133 k");
        assert_eq!(fmt_count_compact(1_178_134), "1.18 M");
        assert_eq!(fmt_count_compact(999_600), "1.00 M", "rounding carries into the next unit");
        assert_eq!(fmt_count_compact(12_345_678_901), "12.3 G");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(fmt_duration(Duration::from_millis(840)), "840ms");
        assert_eq!(fmt_duration(Duration::from_millis(3100)), "3.10s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn clocks_are_minutes_and_seconds() {
        assert_eq!(fmt_clock(42.4), "0:42");
        assert_eq!(fmt_clock(725.0), "12:05");
        assert_eq!(fmt_clock(3729.0), "1:02:09");
        assert_eq!(fmt_clock(-1.0), "0:00");
    }

    #[test]
    fn money_is_written_one_way() {
        assert_eq!(fmt_cost_nanos(0), "$0");
        assert_eq!(fmt_cost_nanos(6_340), "6.34 µ$");
        assert_eq!(fmt_cost_nanos(221_700), "222 µ$");
        assert_eq!(fmt_cost_nanos(999_600), "$0.00100", "three significant figures after rounding up");
        assert_eq!(fmt_cost_nanos(99_960), "100 µ$");
        assert_eq!(fmt_cost_nanos(22_150_000), "$0.0222");
        assert_eq!(fmt_cost_nanos(1_230_000_000), "$1.23");
        assert_eq!(fmt_usd_nanos(18_780_000_000), "$18.78");
        assert_eq!(fmt_usd_nanos(-3_050_000_000), "−$3.05");
        assert_eq!(fmt_usd_nanos(1_240_000_000_000), "$1,240.00");
        assert_eq!(fmt_usd_nanos(2_345_000_000_000_000), "$2.35 M");
        assert_eq!(fmt_usd_nanos(-21_100), "−21.1 µ$");
        assert_eq!(fmt_usd(Some(0.00000634)), "6.34 µ$");
        assert_eq!(fmt_usd(None), "?");
    }

    #[test]
    fn fields_are_dropped_whole_never_cut() {
        let f = [Field::new("50.0 tok/s", 1), Field::new("cost $0.00000634", 0).compact("cost 6.34 µ$")];
        assert_eq!(fit(&f, " · ", 40), "50.0 tok/s · cost $0.00000634");
        assert_eq!(fit(&f, " · ", 25), "50.0 tok/s · cost 6.34 µ$");
        assert_eq!(fit(&f, " · ", 24), "cost 6.34 µ$ …");
        assert_eq!(fit(&f, " · ", 5), "");
    }

    #[test]
    fn tables_lose_low_priority_columns_first() {
        let head = ["lane", "pass", "detail"];
        let full = vec![vec!["base".to_string(), "10/20".into(), "1,178,134 runs".into()]];
        let compact = vec![vec!["base".to_string(), "10/20".into(), "1.18 M runs".into()]];
        assert_eq!(fit_table(&head, &full, &compact, &[0, 1, 2], 40)[1], "base  10/20  1,178,134 runs");
        assert_eq!(fit_table(&head, &full, &compact, &[0, 1, 2], 25)[1], "base  10/20  1.18 M runs");
        assert_eq!(fit_table(&head, &full, &compact, &[0, 1, 2], 20), vec!["lane  pass", "base  10/20"]);
    }
}
