//! The local bench's own logic (benches/local/{measure,report,llama,llama_peers}.rs), compiled here with the bench's
//! source so it cannot rot unseen: medians and ranges, the ratio cells, llama-bench's JSON and llama.cpp's
//! load line as they are printed, the date, and one real measured run through the public engine API.

#![allow(dead_code)] // The bench's modules carry what only the bench binary calls.

#[path = "../benches/local/llama.rs"]
mod llama;
#[path = "../benches/local/llama_peers.rs"]
mod llama_peers;
#[path = "../benches/local/measure.rs"]
mod measure;
#[path = "../benches/local/random_gguf.rs"]
mod random_gguf;
#[path = "../benches/local/report.rs"]
mod report;

use candle_core::quantized::GgmlDType;
use measure::{Run, Stat};

#[test]
fn stat_is_the_median_and_range_of_the_finite_values() {
    let s = Stat::of([3.0, 1.0, 2.0, f64::NAN]).unwrap();
    assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
    let s = Stat::of([4.0, 1.0, 2.0, 3.0]).unwrap();
    assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
    assert!(Stat::of([]).is_none());
    assert!(Stat::of([f64::INFINITY]).is_none());
}

fn run(load: f64, pp: f64, tg: f64, rss: f64) -> Run {
    Run { load_s: Some(load), pp, tg, rss_mb: Some(rss), weights: "Q4_1 weights".into() }
}

fn row(tunebench: Vec<Run>, llama: Vec<Run>) -> report::Row {
    report::Row {
        model: "M".into(),
        format: "Q4_1",
        mix: "Q4_1".into(),
        mb: 98.0,
        tunebench,
        llama,
        build: "portable-noomp".into(),
    }
}

fn header() -> report::Header {
    report::Header { threads: 2, runs: 3, prompt: 512, steps: 128, llama: "commit abc".into(), load_note: "n".into() }
}

#[test]
fn the_table_shows_medians_ranges_and_paired_ratios() {
    let tb = vec![run(1.0, 200.0, 50.0, 700.0), run(1.2, 220.0, 60.0, 700.0), run(1.1, 210.0, 55.0, 700.0)];
    let ll = vec![run(0.1, 100.0, 100.0, 140.0), run(0.1, 100.0, 100.0, 140.0), run(0.1, 100.0, 100.0, 140.0)];
    let md = report::markdown(&header(), &[row(tb, ll)]);
    let line = md.lines().find(|l| l.starts_with("| M |")).expect("the row");
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    // | model | file | runs as | llama.cpp build | load tb | load ll | ratio | pp tb | pp ll | ratio | tg … | rss … |
    assert_eq!(cells[3], "Q4_1 weights");
    assert_eq!(cells[4], "portable-noomp", "the row names the build it was measured against");
    assert_eq!(cells[5], "1.10 (1.00–1.20)");
    assert_eq!(cells[6], "0.10", "equal runs print no range");
    assert_eq!(cells[7], "**11.00×** (10.00–12.00)");
    assert_eq!(cells[8], "210.0 (200.0–220.0)");
    assert_eq!(cells[10], "**2.10×** (2.00–2.20)");
    assert_eq!(cells[13], "**0.55×** (0.50–0.60)");
    assert_eq!(cells[16], "**5.00×**");
    assert!(md.contains("- threads: 2") && md.contains("- runs: 3 per row") && md.contains("commit abc"));
    assert!(md.contains("pp512 ratio") && md.contains("tg128 ratio"));
}

#[test]
fn a_side_that_did_not_run_leaves_dashes_not_figures() {
    let md = report::markdown(&header(), &[row(vec![run(1.0, 200.0, 50.0, 700.0)], Vec::new())]);
    let line = md.lines().find(|l| l.starts_with("| M |")).expect("the row");
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    assert_eq!(cells[8], "200.0");
    assert_eq!((cells[9], cells[10]), ("—", "—"));
}

#[test]
fn llama_bench_json_gives_pp_tg_and_its_setup() {
    // Trimmed from `llama-bench -p 512 -n 128 -r 1 -o json` of llama.cpp 0c1e570.
    let json = br#"[
      {"build_commit": "abc1234", "backends": "CPU", "flash_attn": 0, "repack": true, "n_prompt": 512, "n_gen": 0,
       "avg_ts": 369.4, "samples_ts": [369.4]},
      {"build_commit": "abc1234", "backends": "CPU", "flash_attn": 0, "repack": true, "n_prompt": 0, "n_gen": 128,
       "avg_ts": 151.0, "samples_ts": [151.0]}
    ]"#;
    let (pp, tg, info) = llama::parse_bench(json, 512, 128).unwrap();
    assert_eq!((pp, tg), (369.4, 151.0));
    assert_eq!((info.commit.as_str(), info.backends.as_str()), ("abc1234", "CPU"));
    assert_eq!((info.flash_attn.as_str(), info.repack.as_str()), ("off", "true"));
    let err = llama::parse_bench(json, 256, 128).unwrap_err().to_string();
    assert!(err.contains("pp256"), "{err}");
    assert!(llama::parse_bench(b"not json", 512, 128).is_err());
}

#[test]
fn llama_cpp_load_time_leaves_out_its_tests_own_time() {
    let json = br#"[{"n_prompt": 1, "n_gen": 0, "samples_ns": [2500000, 500000]}]"#;
    let s = llama::test_seconds(json).expect("the samples");
    assert!((s - 0.003).abs() < 1e-12, "{s}");
    assert!(llama::test_seconds(b"[{\"n_prompt\": 1}]").is_err(), "no samples is an error, not a zero");
    assert!(llama::test_seconds(b"not json").is_err());
}

#[test]
fn dates_are_utc_calendar_days() {
    assert_eq!(report::utc(0), "1970-01-01 00:00 UTC");
    assert_eq!(report::utc(1_700_000_000), "2023-11-14 22:13 UTC");
    assert_eq!(report::utc(951_782_400), "2000-02-29 00:00 UTC", "a leap day");
}

#[test]
fn one_run_measures_a_real_model_through_the_public_api() {
    let shape = random_gguf::TINY;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = shape.cached(GgmlDType::Q8_0, dir.path()).unwrap();
    let r = measure::once(&path, 70, 5).unwrap();
    assert!(r.pp.is_finite() && r.pp > 0.0 && r.tg.is_finite() && r.tg > 0.0, "{r:?}");
    assert!(r.load_s.is_some_and(|l| l > 0.0));
    assert!(!r.weights.is_empty());
    if cfg!(target_os = "linux") {
        assert!(r.rss_mb.is_some_and(|m| m > 1.0), "{r:?}");
    }
    assert!(measure::once(&path, 0, 5).is_err(), "an empty prompt is refused");
}

#[test]
fn llama_cpp_batched_tables_and_timing_lines_parse() {
    let table = "|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |\n\
                 |-------|--------|------|--------|----------|----------|----------|----------|----------|----------|\n\
                 |    32 |    128 |    1 |    160 |    0.072 |   443.32 |    0.785 |   163.04 |    0.857 |   186.64 |\n\
                 |    32 |    128 |    4 |    640 |    0.275 |   464.73 |    2.331 |   219.61 |    2.607 |   245.51 |";
    assert_eq!(llama_peers::parse_batched(table), vec![(1, 163.04), (4, 219.61)]);
    let timing = "common_perf_print: prompt eval time =  100.00 ms /   420 tokens (    0.24 ms per token,  4200.00 tokens per second)\n\
                  0.02.241.012 I common_perf_print:        eval time =     931.55 ms /   127 runs   (    7.34 ms per token,   136.33 tokens per second)";
    assert_eq!(llama_peers::parse_eval(timing), Some(136.33));
    assert_eq!(llama_peers::parse_eval("nothing here"), None);
}
