//! Live-count speed: a 4,000-token prompt counted as each keystroke would count it, per tokenizer, against
//! a 10 ms keystroke budget and as a ratio to tiktoken's o200k_base measured in the same run.
//! Run: `cargo bench --bench count` (the local row needs scripts/fetch-model's SmolLM2).

use std::path::Path;
use std::time::Instant;

use tunebench::metrics::Counters;
use tunebench::workspace;

const BUDGET_MS: f64 = 10.0;

fn median_ms(mut f: impl FnMut() -> u64) -> (f64, u64) {
    let n = f(); // warm-up: opens the tokenizer, builds the encoder
    let mut times: Vec<f64> = (0..31)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], n)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("workspaces/ticket-triage");
    let ws = workspace::load(&root).expect("example workspace");
    let long = ws.prompt_text("long").unwrap();
    // About 4,000 tokens: the long prompt three times over, as a longer rulebook would be.
    let system = format!("{long}\n\n{long}\n\n{long}");
    let input = std::fs::read_to_string(root.join("inputs/01-broken-on-arrival.txt")).unwrap_or_default();
    let counters = Counters::new();
    let mut rows = Vec::new();
    for id in ["api", "base"] {
        let lane = ws.lane(id).unwrap();
        let model = ws.models.get(&lane.model).filter(|_| !lane.backend.is_api());
        if model.is_some_and(|m| !m.path.exists()) {
            println!("{id}: skipped (model absent; run scripts/fetch-model)");
            continue;
        }
        let (ms, tokens) = median_ms(|| counters.count(lane, model, &system, &input).map(|c| c.tokens).unwrap());
        rows.push((id, tokens, ms));
    }
    let reference = rows.first().map_or(1.0, |r| r.2);
    println!("{:<8} {:>8} {:>10} {:>14} {:>10}", "lane", "tokens", "median ms", "× o200k_base", "of 10 ms");
    for (id, tokens, ms) in rows {
        println!("{id:<8} {tokens:>8} {ms:>10.2} {:>13.2}× {:>9.0}%", ms / reference, 100.0 * ms / BUDGET_MS);
    }
}
