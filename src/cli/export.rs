//! `tunebench export`: an adapter in a form a server takes — `gguf-lora`, the GGUF LoRA llama.cpp's `--lora`
//! loads over the same base GGUF; `merged`, base and adapter as one model (GGUF, or safetensors from a Hugging
//! Face folder); `ollama`, a Modelfile over either; `vllm`, the PEFT folder vLLM's `--lora-modules` serves —
//! each with a README.txt of what it holds and how to serve it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::Device;

use crate::workspace;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A GGUF LoRA adapter for llama.cpp (llama-server / llama-cli `--lora`) over the lane's base GGUF.
    GgufLora,
    /// Base + adapter merged: a GGUF (--quant) from a GGUF base, safetensors from a Hugging Face folder (the
    /// lane's model, or --base DIR).
    Merged,
    /// An Ollama Modelfile (FROM, ADAPTER or a merged GGUF, TEMPLATE, stops, SYSTEM, sampling).
    Ollama,
    /// The PEFT adapter folder for vLLM (`--enable-lora --lora-modules`), with the serve command and a lane.
    Vllm,
    /// An axolotl config and the dataset: the same LoRA training, on a multi-GPU machine (--base: the Hugging
    /// Face model).
    Axolotl,
}

/// The ranks vLLM's `--max-lora-rank` accepts.
const VLLM_RANKS: [usize; 8] = [8, 16, 32, 64, 128, 256, 320, 512];

/// The smallest `--max-lora-rank` that serves an adapter of `rank`; None above vLLM's largest.
pub fn vllm_max_rank(rank: usize) -> Option<usize> {
    VLLM_RANKS.into_iter().find(|&r| r >= rank)
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// What to write.
    #[arg(long, value_enum)]
    pub to: Target,
    /// The adapter: a folder under adapters/ (NAME), or a path (default: the adapter lane's).
    #[arg(long)]
    pub adapter: Option<String>,
    /// The lane whose base model the adapter runs on (default: the first lane with an adapter).
    #[arg(long)]
    pub lane: Option<String>,
    /// The folder to write into (created; an existing file there is not replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// vllm / axolotl: the Hugging Face name (or folder) of the base model (default: the adapter's
    /// base_model_name_or_path). merged: a Hugging Face folder of the lane's model, merged into safetensors.
    #[arg(long)]
    pub base: Option<String>,
    /// merged / ollama: the merged GGUF's weight types.
    #[arg(long, value_enum, default_value = "q8_0")]
    pub quant: crate::export::merged::Quant,
    /// Serve the export (gguf-lora, or a merged GGUF) with llama-server and run the test cases through it and
    /// through the in-process adapter lane; exit 1 when they part (an export already in --out is verified
    /// as it is, not rewritten).
    #[arg(long)]
    pub verify: bool,
    /// --verify: the llama-server binary (default: TUNEBENCH_LLAMA_SERVER, else scripts/build-llama-cpp
    /// --server's ~/.cache/tunebench/llama.cpp/server/bin/llama-server).
    #[arg(long, requires = "verify")]
    pub server: Option<PathBuf>,
    /// --verify: only the first N test cases.
    #[arg(long, requires = "verify", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// --verify: the least share of cases whose two answers agree on their first 16 tokens.
    #[arg(long, requires = "verify", default_value_t = 0.9)]
    pub min_agree: f64,
    /// --verify: the most the served pass rate may fall under the in-process one (0.05 = 5 points).
    #[arg(long, requires = "verify", default_value_t = 0.05)]
    pub max_drop: f64,
}

pub async fn run(path: &Path, args: &ExportArgs) -> anyhow::Result<std::process::ExitCode> {
    let ws = workspace::load(path)?;
    let lane = match &args.lane {
        Some(id) => ws.lane(id).with_context(|| format!("no lane `{id}` in {}", ws.file.display()))?,
        None => ws.adapter_lane().context("no lane has an adapter: name one with --lane and --adapter")?,
    };
    if args.to == Target::Axolotl {
        return super::export_merged::axolotl(&ws, lane, args);
    }
    let adapter = match (&args.adapter, &lane.adapter) {
        (Some(a), _) if ws.resolve(a).exists() => ws.resolve(a),
        (Some(a), _) => ws.resolve(&format!("adapters/{a}")),
        (None, Some(a)) => ws.resolve(a),
        (None, None) => bail!("lane `{}` has no adapter: give --adapter NAME", lane.id),
    };
    let model =
        ws.models.get(&lane.model).with_context(|| format!("lane `{}`: no local model `{}`", lane.id, lane.model))?;
    let base_path = crate::engine::local::paths::resolve(&model.path)?;
    let gguf = base_path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if matches!(args.to, Target::GgufLora | Target::Ollama) && !gguf {
        let what = if args.to == Target::Ollama { "Ollama runs GGUF models, and " } else { "" };
        bail!(
            "lane `{}`'s model is {} — {what}a GGUF LoRA goes over a GGUF base (llama.cpp loads the adapter's q/k \
             rows in the GGUF's order): point the lane at a GGUF of the same model",
            lane.id,
            base_path.display()
        );
    }
    let arch = if gguf { crate::engine::local::gguf_architecture(&base_path)? } else { String::new() };
    // Read against the base: an adapter that does not fit the lane's model is refused before anything is written.
    let loaded = crate::engine::local::load(&base_path, &Device::Cpu, None)?;
    let read = crate::lora::Adapter::load(&adapter, loaded.base())
        .map_err(|e| anyhow::anyhow!("adapter {}: {e}", adapter.display()))?;
    if let Some(first) = read.unmatched.first().or(read.untargeted.first()) {
        bail!(
            "adapter {}: tensor {first} would not be exported (it matches no layer, or no target)",
            adapter.display()
        );
    }
    std::fs::create_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
    // What llama-server serves for --verify: the model, and the adapter over it.
    let served = match args.to {
        Target::GgufLora => Some((base_path.clone(), Some(args.out.join(format!("{}.gguf", read.name))))),
        Target::Merged if gguf && args.base.is_none() => {
            Some((args.out.join(format!("{}-merged-{}.gguf", read.name, args.quant.label())), None))
        }
        _ => None,
    };
    if args.verify && served.is_none() {
        bail!(
            "--verify serves a GGUF export with llama-server: --to gguf-lora, or --to merged from a GGUF base \
             (vLLM and Ollama are not run here; the Ollama export's ADAPTER is the gguf-lora file)"
        );
    }
    let exported = served.as_ref().map(|(m, l)| l.as_ref().unwrap_or(m).clone());
    let existing = args.verify && exported.as_ref().is_some_and(|p| p.is_file());
    if existing {
        eprintln!("verifying the export already in {} (nothing is rewritten)", args.out.display());
    } else {
        let code = match args.to {
            Target::GgufLora => gguf_lora(&read, &arch, &base_path, &args.out),
            Target::Merged => super::export_merged::merged(&read, &adapter, &base_path, gguf, args),
            Target::Ollama => super::export_merged::ollama(&ws, lane, &read, &arch, &base_path, args),
            Target::Vllm => vllm(&ws, lane, &read, &adapter, args),
            Target::Axolotl => super::export_merged::axolotl(&ws, lane, args),
        }?;
        if !args.verify {
            return Ok(code);
        }
    }
    let Some((model, lora)) = served else { return Ok(std::process::ExitCode::SUCCESS) };
    super::export_verify::verify(&ws, lane, &base_path, &model, lora.as_deref(), args).await
}

/// Fails when any of `paths` exists: an export never replaces a file.
pub(super) fn fresh(paths: &[&Path]) -> anyhow::Result<()> {
    match paths.iter().find(|p| p.exists()) {
        Some(there) => bail!("{} exists: choose another --out (nothing is replaced)", there.display()),
        None => Ok(()),
    }
}

fn gguf_lora(
    read: &crate::lora::Adapter,
    arch: &str,
    base_path: &Path,
    dir: &Path,
) -> anyhow::Result<std::process::ExitCode> {
    let name = format!("{}.gguf", read.name);
    let out = dir.join(&name);
    let readme_path = dir.join("README.txt");
    fresh(&[&out, &readme_path])?;
    let modules = crate::lora::gguf::write(read, arch, &out)?;
    let readme = format!(
        "{name}: the LoRA adapter {} ({modules} modules, rank {}) as a GGUF LoRA for llama.cpp, over the base\n\
         {} (general.architecture = {arch}). Tensors are f32; each module's scale is folded into lora_b so\n\
         that llama.cpp's alpha / rank (adapter.lora.alpha = {}) gives PEFT's result.\n\n\
         Serve it:\n  llama-server -m {} --lora {name}\n\
         or try it:\n  llama-cli -m {} --lora {name} -cnv\n\n\
         In tunebench a lane takes it as its adapter too: adapter = \"{}\".\n",
        read.dir.display(),
        read.rank(),
        base_path.display(),
        read.rank(),
        base_path.display(),
        base_path.display(),
        out.display()
    );
    crate::workspace::store::write_atomic(&readme_path, readme.as_bytes())?;
    println!("wrote {} ({modules} modules) and {}", out.display(), readme_path.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// The adapter's files as PEFT wrote them (vLLM reads PEFT's format), the serve command and a lane.
fn vllm(
    ws: &workspace::Workspace,
    lane: &crate::workspace::LaneSpec,
    read: &crate::lora::Adapter,
    adapter: &Path,
    args: &ExportArgs,
) -> anyhow::Result<std::process::ExitCode> {
    if !adapter.is_dir() {
        bail!("--to vllm: {} is not a PEFT adapter folder (vLLM serves PEFT's format)", adapter.display());
    }
    let rank = read.rank();
    let Some(max_rank) = vllm_max_rank(rank) else {
        bail!(
            "--to vllm: rank {rank} is above the largest --max-lora-rank vLLM takes ({})",
            VLLM_RANKS[VLLM_RANKS.len() - 1]
        );
    };
    let base = match (&args.base, &read.config.base_model_name_or_path) {
        (Some(b), _) => b.clone(),
        (None, Some(b)) if !b.trim().is_empty() => b.clone(),
        _ => bail!("--to vllm: the adapter names no base_model_name_or_path: give vLLM's base with --base NAME"),
    };
    let folder = args.out.join(&read.name);
    let (readme_path, lane_path) = (args.out.join("README.txt"), args.out.join("lane.toml"));
    fresh(&[&folder, &readme_path, &lane_path])?;
    std::fs::create_dir_all(&folder).with_context(|| folder.display().to_string())?;
    for f in ["adapter_config.json", "adapter_model.safetensors", "tunebench.json"] {
        let from = adapter.join(f);
        if from.is_file() {
            let bytes = std::fs::read(&from).with_context(|| from.display().to_string())?;
            crate::workspace::store::write_atomic(&folder.join(f), &bytes)?;
        }
    }
    let prompt = ws.prompt_text(&lane.prompt).unwrap_or_default();
    let s = &lane.sampling;
    let snippet = format!(
        "# The adapter served by vLLM, as a lane (append to workspace.toml; the prompt is lane `{}`'s).\n\
         [[lanes]]\nid = \"{}-vllm\"\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:8000/v1\"\napi_key_env = \"\"\n\
         model = \"{}\"\nprompt = \"{}\"\nmax_tokens = {}\ntemperature = {}\n",
        lane.id, lane.id, read.name, lane.prompt, s.max_tokens, s.temperature
    );
    let readme = format!(
        "{}/: the LoRA adapter {} (rank {rank}, {} modules) in PEFT's format, as vLLM serves it over {base}.\n\n\
         Serve it:\n  vllm serve {base} --enable-lora --max-lora-rank {max_rank} --lora-modules {}={}\n\n\
         Ask for model \"{}\" (the base answers as \"{base}\"). The lane in lane.toml does, with lane `{}`'s\n\
         system prompt ({} characters) and sampling; vLLM applies the base's own chat template.\n",
        read.name,
        adapter.display(),
        read.modules.len(),
        read.name,
        folder.display(),
        read.name,
        lane.id,
        prompt.chars().count()
    );
    crate::workspace::store::write_atomic(&readme_path, readme.as_bytes())?;
    crate::workspace::store::write_atomic(&lane_path, snippet.as_bytes())?;
    println!("wrote {}, {} and {}", folder.display(), readme_path.display(), lane_path.display());
    Ok(std::process::ExitCode::SUCCESS)
}
