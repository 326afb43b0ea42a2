//! Training speed on the default model (CPU): tokens per second of forward + backward over the example
//! workspace's first training examples, with tunebench's frozen-weight op against candle's plain matmul
//! (whose backward also computes every frozen weight's gradient) measured in the same run.
//! Run: `cargo bench --bench train` (or scripts/bench).

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use tunebench::dataset::{Dataset, Split};
use tunebench::engine::local::load;
use tunebench::lora::train::TrainModel;
use tunebench::lora::train::data::{Sequence, sequences};

const EXAMPLES: usize = 8;
const RANK: usize = 16;

fn step(model: &TrainModel, seqs: &[Sequence]) -> usize {
    let mut tokens = 0;
    for s in seqs {
        let loss = model.loss(&s.ids, &s.positions, &s.targets).unwrap();
        let grads = loss.backward().unwrap();
        assert!(grads.get(model.vars()[0].as_tensor()).is_some());
        tokens += s.ids.len();
    }
    tokens
}

fn rate(model: &TrainModel, seqs: &[Sequence]) -> f64 {
    step(model, &seqs[..1]); // warm-up outside the clock
    let t = Instant::now();
    let tokens = step(model, seqs);
    tokens as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        println!("train bench skipped: {} is missing (scripts/fetch-model fetches it)", path.display());
        return;
    }
    let m = load(&path, &Device::Cpu, None).expect("model loads");
    let ds = Dataset::load(&root.join("workspaces/ticket-triage/dataset")).unwrap();
    let xs: Vec<_> = ds.examples().filter(|(s, ..)| *s == Split::Train).map(|(_, x, _)| x).take(EXAMPLES).collect();
    let (seqs, _) = sequences(&m.tokenizer, &m.template, &xs, 1024);
    let all: Vec<String> =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec();
    let frozen = TrainModel::new(m.base().clone(), &all, RANK, 32.0, 1).unwrap();
    let plain = TrainModel::new(m.base().clone(), &all, RANK, 32.0, 1).unwrap().with_plain_matmul().unwrap();
    let tokens: usize = seqs.iter().map(|s| s.ids.len()).sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("LoRA r={RANK} on all linear layers, {} examples ({tokens} tokens), CPU, {threads} threads", seqs.len());
    let p = rate(&plain, &seqs);
    let f = rate(&frozen, &seqs);
    println!("{:<44} {:>8.1} tok/s  1.00×", "reference: plain matmul backward", p);
    println!("{:<44} {:>8.1} tok/s  {:.2}×", "frozen-weight op (input gradient only)", f, f / p);
}
