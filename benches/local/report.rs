//! The comparison table: one row per (model, format), load / pp / tg / peak RSS of tunebench and llama.cpp,
//! each the median with the min–max of the runs, and the ratios tunebench ÷ llama.cpp; as Markdown.

use crate::measure::{Run, Stat};

/// One (model, format) row's runs.
pub struct Row {
    pub model: String,
    pub format: &'static str,
    /// The file's tensor types and size (models::describe).
    pub mix: String,
    pub mb: f64,
    pub tunebench: Vec<Run>,
    pub llama: Vec<Run>,
    /// The llama.cpp build `llama` ran on (the row's fastest).
    pub build: String,
}

/// What the header states.
pub struct Header {
    pub threads: usize,
    pub runs: usize,
    pub prompt: usize,
    pub steps: usize,
    /// Variant and commit of the reference, or why there is none.
    pub llama: String,
    pub load_note: String,
}

fn cell(s: Option<Stat>, digits: usize) -> String {
    match s {
        Some(s) if s.min == s.max => format!("{:.*}", digits, s.median),
        Some(s) => format!("{:.*} ({:.*}–{:.*})", digits, s.median, digits, s.min, digits, s.max),
        None => "—".to_string(),
    }
}

/// tunebench's median ÷ llama.cpp's, with the min–max of the runs' own ratios (run i of one engine against
/// run i of the other: they ran next to each other).
fn ratio(tb: &[Run], ll: &[Run], f: fn(&Run) -> Option<f64>) -> String {
    let (a, b) = (Stat::of(tb.iter().filter_map(f)), Stat::of(ll.iter().filter_map(f)));
    let (Some(a), Some(b)) = (a, b) else { return "—".to_string() };
    let paired = Stat::of(tb.iter().zip(ll).filter_map(|(x, y)| Some(f(x)? / f(y)?)));
    match paired {
        Some(p) if p.min != p.max => format!("**{:.2}×** ({:.2}–{:.2})", a.median / b.median, p.min, p.max),
        _ => format!("**{:.2}×**", a.median / b.median),
    }
}

impl Row {
    fn markdown(&self) -> String {
        let (tb, ll) = (&self.tunebench, &self.llama);
        let stat = |runs: &[Run], f: fn(&Run) -> Option<f64>| Stat::of(runs.iter().filter_map(f));
        let load = |r: &Run| r.load_s;
        let pp = |r: &Run| Some(r.pp);
        let tg = |r: &Run| Some(r.tg);
        let rss = |r: &Run| r.rss_mb;
        let weights = tb.first().map_or("—".to_string(), |r| r.weights.clone());
        format!(
            "| {} | {} ({}; {:.0} MB) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.model,
            self.format,
            self.mix,
            self.mb,
            weights,
            if self.build.is_empty() { "—" } else { &self.build },
            cell(stat(tb, load), 2),
            cell(stat(ll, load), 2),
            ratio(tb, ll, load),
            cell(stat(tb, pp), 1),
            cell(stat(ll, pp), 1),
            ratio(tb, ll, pp),
            cell(stat(tb, tg), 1),
            cell(stat(ll, tg), 1),
            ratio(tb, ll, tg),
            cell(stat(tb, rss), 0),
            cell(stat(ll, rss), 0),
            ratio(tb, ll, rss),
        )
    }
}

/// The whole report: header lines, the table, and what each column means.
pub fn markdown(h: &Header, rows: &[Row]) -> String {
    let (p, g) = (h.prompt, h.steps);
    let mut s = format!(
        "## tunebench vs llama.cpp, CPU\n\n\
         - machine: {}\n- threads: {} (both engines: llama-bench -t {}, RAYON_NUM_THREADS = TUNEBENCH_THREADS = {})\n\
         - llama.cpp: {}\n- runs: {} per row, each a fresh process, tunebench and llama.cpp taking turns; \
         every figure is the median (min–max) of the runs\n- date: {}\n\n",
        machine(),
        h.threads,
        h.threads,
        h.threads,
        h.llama,
        h.runs,
        utc_now()
    );
    s.push_str(&format!(
        "| model | file | tunebench runs it as | llama.cpp build | load s tunebench | load s llama.cpp | load ratio | \
         pp{p} tok/s tunebench | pp{p} llama.cpp | pp{p} ratio | tg{g} tok/s tunebench | tg{g} llama.cpp | \
         tg{g} ratio | peak RSS MB tunebench | peak RSS MB llama.cpp | RSS ratio |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    ));
    for r in rows {
        s.push_str(&r.markdown());
        s.push('\n');
    }
    s.push_str(&format!(
        "\nRatios are tunebench ÷ llama.cpp (speed: above 1 is tunebench faster; load and RSS: below 1 is \
         tunebench lighter), the median's ratio with the min–max of the runs' paired ratios. pp{p}: one \
         {p}-token prompt from an empty cache (tunebench in its lanes' prefill chunks); tg{g}: {g} single-token \
         steps from an empty context, as llama-bench's tg{g}; both after a warm-up (one full prompt, one step) \
         as llama-bench does. Load: tunebench's `load` (read, build the weights); {}. Peak RSS: the whole \
         process (VmHWM for tunebench, `/usr/bin/time -f %M` for llama-bench, which also holds its pp and tg \
         contexts).\n",
        h.load_note
    ));
    s
}

/// CPU model, cores, memory, SIMD of this machine (Linux /proc; elsewhere the core count only).
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        cpuinfo.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
    };
    let flags = field("flags").unwrap_or_default();
    let simd: Vec<&str> = ["avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni"]
        .into_iter()
        .filter(|f| flags.split(' ').any(|x| x == *f))
        .collect();
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let kb: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
        Some(format!(", {:.0} GB RAM", kb / 1024.0 / 1024.0))
    });
    format!(
        "{}, {cores} cores{}, {} {}",
        field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        mem.unwrap_or_default(),
        if simd.is_empty() { "no x86 SIMD flags read" } else { "SIMD:" },
        simd.join(" ")
    )
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    utc(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64)
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}
