//! `tunebench export`: an adapter in a form a server takes — so far `gguf-lora`, the GGUF LoRA llama.cpp's
//! `--lora` loads over the same base GGUF — with a README.txt of what it holds and how to serve it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::Device;

use crate::workspace;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A GGUF LoRA adapter for llama.cpp (llama-server / llama-cli `--lora`) over the lane's base GGUF.
    GgufLora,
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
}

pub fn run(path: &Path, args: &ExportArgs) -> anyhow::Result<std::process::ExitCode> {
    let ws = workspace::load(path)?;
    let lane = match &args.lane {
        Some(id) => ws.lane(id).with_context(|| format!("no lane `{id}` in {}", ws.file.display()))?,
        None => ws.adapter_lane().context("no lane has an adapter: name one with --lane and --adapter")?,
    };
    let adapter = match (&args.adapter, &lane.adapter) {
        (Some(a), _) if ws.resolve(a).exists() => ws.resolve(a),
        (Some(a), _) => ws.resolve(&format!("adapters/{a}")),
        (None, Some(a)) => ws.resolve(a),
        (None, None) => bail!("lane `{}` has no adapter: give --adapter NAME", lane.id),
    };
    let model =
        ws.models.get(&lane.model).with_context(|| format!("lane `{}`: no local model `{}`", lane.id, lane.model))?;
    let base_path = crate::engine::local::paths::resolve(&model.path)?;
    if !base_path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        bail!(
            "lane `{}`'s model is {} — a GGUF LoRA goes over a GGUF base (llama.cpp loads the adapter's q/k rows in the \
             GGUF's order): point the lane at a GGUF of the same model",
            lane.id,
            base_path.display()
        );
    }
    let mut file = std::fs::File::open(&base_path).with_context(|| base_path.display().to_string())?;
    let arch = crate::engine::local::read_gguf_content(&mut file, &base_path)?
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .with_context(|| format!("{}: no general.architecture", base_path.display()))?;
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
    let name = format!("{}.gguf", read.name);
    let out = args.out.join(&name);
    let readme_path = args.out.join("README.txt");
    if let Some(there) = [&out, &readme_path].into_iter().find(|p| p.exists()) {
        bail!("{} exists: choose another --out (nothing is replaced)", there.display());
    }
    let modules = crate::lora::gguf::write(&read, &arch, &out)?;
    let readme = format!(
        "{name}: the LoRA adapter {} ({modules} modules, rank {}) as a GGUF LoRA for llama.cpp, over the base\n\
         {} (general.architecture = {arch}). Tensors are f32; each module's scale is folded into lora_b so\n\
         that llama.cpp's alpha / rank (adapter.lora.alpha = {}) gives PEFT's result.\n\n\
         Serve it:\n  llama-server -m {} --lora {name}\n\
         or try it:\n  llama-cli -m {} --lora {name} -cnv\n\n\
         In tunebench a lane takes it as its adapter too: adapter = \"{}\".\n",
        adapter.display(),
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
