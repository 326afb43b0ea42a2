//! `tunebench logits`: a model's logits at every position of a raw id sequence, in f32 from the file's own
//! weights, as JSON lines (top K per position) or a safetensors file, to check a GGUF against its reference.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use candle_core::{DType, Tensor};

use crate::engine::local::{logits, paths, pick_device, tokenizer::Tokenizer};

#[derive(clap::Args)]
pub struct LogitsArgs {
    /// A GGUF file or a safetensors model folder.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT adapter folder, or a GGUF LoRA file (`tunebench export --to gguf-lora`), applied to the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Comma-separated token ids: the whole input (no BOS, no chat template added).
    #[arg(long, conflicts_with = "text", required_unless_present = "text")]
    ids: Option<String>,
    /// Text, tokenized in the model's own tokenizer with no special tokens added or recognised.
    #[arg(long)]
    text: Option<String>,
    /// Write tensors `logits` [n, vocab] (f32) and `ids` [n] (i64) to this safetensors file instead of printing.
    #[arg(long)]
    out: Option<PathBuf>,
    /// How many of the largest logits each printed line lists.
    #[arg(long, default_value_t = 5, conflicts_with = "out")]
    top: usize,
    /// auto, cpu, cuda (the first GPU), cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Parses `--ids` (`1, 2,3`), naming the flag and the piece that is not an id.
fn parse_ids(text: &str) -> anyhow::Result<Vec<u32>> {
    let ids = text
        .split(',')
        .map(str::trim)
        .map(|p| {
            p.parse::<u32>().map_err(|_| {
                anyhow::anyhow!("--ids: `{p}` is not a token id (expected comma-separated integers from 0)")
            })
        })
        .collect::<anyhow::Result<Vec<u32>>>()?;
    Ok(ids)
}

pub(super) fn run(a: &LogitsArgs) -> anyhow::Result<ExitCode> {
    if a.top == 0 {
        bail!("--top: must be at least 1");
    }
    if a.ids.as_deref().is_some_and(|t| t.trim().is_empty()) {
        bail!("--ids: no ids given (at least one token id is needed)");
    }
    let model_path = paths::resolve(&a.model).map_err(|e| anyhow::anyhow!("--model: {e}"))?;
    if let Some(dir) = &a.adapter
        && !dir.join("adapter_config.json").is_file()
        && !(dir.is_file() && dir.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")))
    {
        bail!("--adapter: {}: not a PEFT adapter folder (no adapter_config.json) nor a GGUF LoRA file", dir.display());
    }
    // Checked before the weights load: a typo should not cost a model load.
    let ids = match (&a.ids, &a.text) {
        (Some(ids), _) => parse_ids(ids)?,
        (None, Some(text)) => {
            let tok = Tokenizer::open(&model_path).with_context(|| format!("--model: {}", model_path.display()))?;
            let ids = tok.encode(text, false).context("--text")?;
            if ids.is_empty() {
                bail!("--text: the text gives no tokens (at least one is needed)");
            }
            ids
        }
        (None, None) => bail!("give --ids 1,2,3 or --text TEXT"),
    };
    let spec = match a.device.as_str() {
        "cuda" => "cuda:0",
        d if crate::workspace::valid_device(d) => d,
        d => bail!("--device: unknown device `{d}` (expected auto, cpu, cuda, cuda:N or metal)"),
    };
    let (_, device) = pick_device(spec).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    let model = logits::load_exact(&model_path, &device).map_err(|e| anyhow::anyhow!("--model: {e}"))?;
    let base = model.base();
    if let Some(why) = logits::invalid_ids(&ids, base.embed.dims()[0], base.cfg.context) {
        bail!("{}: {why}", if a.ids.is_some() { "--ids" } else { "--text" });
    }
    let width = base.lm_head.out_dim;
    if a.top > width {
        bail!("--top: {} is more than the model's {width} logits per position", a.top);
    }
    let decoder = match &a.adapter {
        Some(dir) => {
            let view = model.with_adapter(dir).map_err(|e| anyhow::anyhow!("--adapter: {e}"))?;
            // What the adapter leaves unapplied is said, as a lane's pane says it.
            for w in &view.warnings {
                eprintln!("tunebench: warning: {}", crate::visible::escape_line(w));
            }
            view.model.clone()
        }
        None => model.plain.clone(),
    };
    let values = logits::all_positions(&decoder, &ids)?;
    match &a.out {
        Some(out) => write(out, &values, &ids)?,
        None => print_lines(&values, &ids, a.top)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn write(out: &Path, values: &Tensor, ids: &[u32]) -> anyhow::Result<()> {
    let ids_t = Tensor::new(ids, &candle_core::Device::Cpu)?.to_dtype(DType::I64)?;
    let tensors = [("ids", ids_t), ("logits", values.contiguous()?)];
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (*k, v)), None)
        .map_err(|e| anyhow::anyhow!("--out: {}: {e}", out.display()))?;
    crate::workspace::store::write_atomic(out, &bytes).map_err(|e| anyhow::anyhow!("--out: {e}"))?;
    Ok(())
}

/// One printed position, fields in the documented order; logits as f32 print their shortest exact form.
#[derive(serde::Serialize)]
struct Line {
    pos: usize,
    id: u32,
    top: Vec<(u32, f32)>,
}

fn print_lines(values: &Tensor, ids: &[u32], top: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    for (pos, id) in ids.iter().enumerate() {
        let row: Vec<f32> = values.get(pos)?.to_vec1()?;
        let top = logits::top_k(&row, top);
        writeln!(stdout, "{}", serde_json::to_string(&Line { pos, id: *id, top })?)?;
    }
    Ok(())
}
