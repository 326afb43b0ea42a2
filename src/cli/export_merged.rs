//! `tunebench export --to merged`, `--to ollama` and `--to axolotl`: the merged model (GGUF or safetensors),
//! the Modelfile, and the axolotl run of the same training, each with its README.txt.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use candle_core::Device;

use super::export::{ExportArgs, fresh};
use crate::engine::local::prompt::PromptTokenizer;
use crate::engine::local::template::RenderOptions;
use crate::export::merged::{self, Merged};
use crate::export::ollama::{MERGE_ONLY, Modelfile, stops};
use crate::export::template;
use crate::lora::Adapter;
use crate::workspace::{LaneSpec, Workspace, store::write_atomic};

/// A type count such as `Q8_0 ×211, F32 ×61`.
fn types_line(m: &Merged) -> String {
    m.types.iter().map(|(t, n)| format!("{t} ×{n}")).collect::<Vec<_>>().join(", ")
}

pub fn merged(
    read: &Adapter,
    adapter_path: &Path,
    base_path: &Path,
    gguf: bool,
    args: &ExportArgs,
) -> anyhow::Result<ExitCode> {
    let hf = match &args.base {
        Some(b) => Some(PathBuf::from(b)),
        None if !gguf => Some(base_path.to_path_buf()),
        None => None,
    };
    let readme_path = args.out.join("README.txt");
    let Some(hf) = hf else {
        let name = format!("{}-merged-{}.gguf", read.name, args.quant.label());
        let out = args.out.join(&name);
        fresh(&[&out, &readme_path])?;
        let m = merged::gguf(base_path, Some(read), args.quant, &out)?;
        let readme = format!(
            "{name}: the base {} with the adapter {} merged in ({} weights took its delta), every matrix\n\
             re-quantized as llama.cpp's {} ({}); the base's metadata, tokenizer and chat template kept.\n\
             A base already quantized is quantized twice: merge from an F16 / BF16 GGUF where you can.\n\n\
             Serve it:\n  llama-server -m {name} --jinja\nor in tunebench: a model with path = \"{}\".\n",
            base_path.display(),
            adapter_path.display(),
            m.merged,
            args.quant.label(),
            types_line(&m),
            out.display()
        );
        write_atomic(&readme_path, readme.as_bytes())?;
        println!(
            "wrote {} ({} tensors, {} merged: {}) and {}",
            out.display(),
            m.tensors,
            m.merged,
            types_line(&m),
            readme_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    if !hf.join("config.json").is_file() {
        bail!("--base {}: not a Hugging Face model folder (no config.json)", hf.display());
    }
    // Read against the folder itself: its q/k rows are in Hugging Face's order, not the GGUF's.
    let loaded = crate::engine::local::load(&hf, &Device::Cpu, None)?;
    let read = Adapter::load(adapter_path, loaded.base())
        .map_err(|e| anyhow::anyhow!("adapter {}: {e}", adapter_path.display()))?;
    let folder = args.out.join(format!("{}-merged", read.name));
    fresh(&[&folder, &readme_path])?;
    std::fs::create_dir_all(&folder).with_context(|| folder.display().to_string())?;
    let m = merged::safetensors(&hf, &read, None, &folder)?;
    let readme = format!(
        "{}/: the model {} with the adapter {} merged in ({} weights took its delta; {}), with its config,\n\
         tokenizer and chat template: transformers and vLLM load it with no adapter support.\n\n\
         Serve it:\n  vllm serve {}\nor load it:\n  AutoModelForCausalLM.from_pretrained(\"{}\")\n\
         For llama.cpp, convert it: python convert_hf_to_gguf.py {} --outtype f16\n",
        folder.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        hf.display(),
        adapter_path.display(),
        m.merged,
        types_line(&m),
        folder.display(),
        folder.display(),
        folder.display()
    );
    write_atomic(&readme_path, readme.as_bytes())?;
    println!("wrote {} ({} tensors, {} merged) and {}", folder.display(), m.tensors, m.merged, readme_path.display());
    Ok(ExitCode::SUCCESS)
}

pub fn ollama(
    ws: &Workspace,
    lane: &LaneSpec,
    read: &Adapter,
    arch: &str,
    base_path: &Path,
    args: &ExportArgs,
) -> anyhow::Result<ExitCode> {
    let spec =
        ws.models.get(&lane.model).with_context(|| format!("lane `{}`: no local model `{}`", lane.id, lane.model))?;
    let pt = PromptTokenizer::open_with(base_path, spec.chat_template.as_deref())?;
    let vocab = &pt.tokenizer.vocab;
    let piece = |id: Option<u32>| id.and_then(|i| vocab.tokens.get(i as usize)).cloned().unwrap_or_default();
    let opts = RenderOptions { enable_thinking: lane.enable_thinking };
    let derived = template::derive(&pt.template, &piece(vocab.bos), &piece(vocab.eos), opts, vocab.add_bos)
        .map_err(|e| anyhow::anyhow!("{e}: export --to merged and serve it with llama.cpp's --jinja instead"))?;
    let end_tokens: Vec<String> = vocab.stop_ids.iter().map(|&i| piece(Some(i))).collect();
    let merge = MERGE_ONLY.contains(&arch);
    let weights =
        if merge { format!("{}-merged-{}.gguf", read.name, args.quant.label()) } else { format!("{}.gguf", read.name) };
    let (weights_path, modelfile_path, readme_path) =
        (args.out.join(&weights), args.out.join("Modelfile"), args.out.join("README.txt"));
    fresh(&[&weights_path, &modelfile_path, &readme_path])?;
    let system = ws.prompt_text(&lane.prompt).unwrap_or_default();
    let base_abs = std::fs::canonicalize(base_path).with_context(|| base_path.display().to_string())?;
    // Ollama reads a relative path from the Modelfile's folder: the export moves as one folder.
    let local = PathBuf::from(format!("./{weights}"));
    let modelfile = Modelfile {
        from: if merge { &local } else { &base_abs },
        adapter: (!merge).then_some(local.as_path()),
        template: &derived,
        system,
        stops: stops(&end_tokens, &lane.sampling.stop),
        sampling: &lane.sampling,
    }
    .text()?;
    let how = if merge {
        let m = merged::gguf(base_path, Some(read), args.quant, &weights_path)?;
        format!(
            "{weights}: the base merged with the adapter ({} weights; {}): Ollama cannot apply a LoRA adapter\n\
             to a `{arch}` model, so FROM names the merged model.",
            m.merged,
            types_line(&m)
        )
    } else {
        let n = crate::lora::gguf::write(read, arch, &weights_path)?;
        format!("{weights}: the adapter as a GGUF LoRA ({n} modules), applied by ADAPTER over FROM's base.")
    };
    write_atomic(&modelfile_path, modelfile.as_bytes())?;
    let dated = if pt.template.source_calls("strftime_now") {
        "\nThe model's template prints today's date: the TEMPLATE holds the export's date, as it was rendered.\n"
    } else {
        ""
    };
    let turns = match &derived.multi_turn_differs {
        None => "It renders the same as the model's own template for multi-turn chats too.".to_string(),
        Some(d) => format!(
            "Multi-turn chats render differently from the model's own template ({d});\n\
             a system prompt and one user message — what the lane sends — render the same."
        ),
    };
    let readme = format!(
        "Modelfile: lane `{}` for Ollama — FROM {}, its system prompt, sampling and stop tokens.\n{how}\n\n\
         TEMPLATE was derived from the model's chat template by rendering conversations with tunebench's renderer\n\
         (the one the lane uses) and reading the text around each message.\n{turns}\n{dated}\n\
         Create and run it:\n  ollama create {} -f {}\n  ollama run {}\n",
        lane.id,
        if merge { weights.clone() } else { base_abs.display().to_string() },
        lane.id,
        modelfile_path.display(),
        lane.id
    );
    write_atomic(&readme_path, readme.as_bytes())?;
    println!("wrote {}, {} and {}", modelfile_path.display(), weights_path.display(), readme_path.display());
    Ok(ExitCode::SUCCESS)
}

/// The base model axolotl trains: --base, else the lane's model when it is a Hugging Face folder, else the
/// base_model_name_or_path of the lane's adapter.
fn axolotl_base(ws: &Workspace, lane: &LaneSpec, args: &ExportArgs) -> anyhow::Result<String> {
    if let Some(b) = &args.base {
        return Ok(b.clone());
    }
    if let Some(m) = ws.models.get(&lane.model)
        && m.path.join("config.json").is_file()
    {
        return Ok(m.path.display().to_string());
    }
    let named = lane.adapter.as_ref().and_then(|a| {
        let text = std::fs::read_to_string(ws.resolve(a).join("adapter_config.json")).ok()?;
        crate::lora::AdapterConfig::parse(&text).ok()?.base_model_name_or_path.filter(|b| !b.trim().is_empty())
    });
    named.ok_or_else(|| {
        anyhow::anyhow!(
            "axolotl trains a Hugging Face model, not a GGUF: give its name or folder with --base \
             (e.g. HuggingFaceTB/SmolLM2-135M-Instruct)"
        )
    })
}

/// The pad token to name: none when the base folder's tokenizer has one, else its end-of-sequence token
/// (from the folder, or from the lane's own model when the base is a hub name).
fn pad_token(ws: &Workspace, lane: &LaneSpec, base: &str) -> Option<String> {
    let config = std::fs::read_to_string(Path::new(base).join("tokenizer_config.json")).ok();
    let token =
        |v: &serde_json::Value| v.as_str().map(String::from).or_else(|| v["content"].as_str().map(String::from));
    if let Some(c) = config.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()) {
        if c.get("pad_token").and_then(token).is_some() {
            return None;
        }
        if let Some(eos) = c.get("eos_token").and_then(token) {
            return Some(eos);
        }
    }
    let m = ws.models.get(&lane.model)?;
    let path = crate::engine::local::paths::resolve(&m.path).ok()?;
    let pt = PromptTokenizer::open(&path).ok()?;
    let v = &pt.tokenizer.vocab;
    v.eos.and_then(|e| v.tokens.get(e as usize)).cloned()
}

pub fn axolotl(ws: &Workspace, lane: &LaneSpec, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    use crate::dataset::{Dataset, Split};
    use crate::export::axolotl;
    let base = axolotl_base(ws, lane, args)?;
    let opts = super::train::default_options();
    let targets: Vec<String> = if opts.targets == "all-linear" {
        Vec::new()
    } else {
        opts.targets.split(',').map(|t| t.trim().to_string()).collect()
    };
    let ds = Dataset::load(&ws.dataset_dir())?;
    let (train, n_train) = axolotl::split_file(&ds, Split::Train);
    let (valid, n_valid) = axolotl::split_file(&ds, Split::Valid);
    if n_train == 0 {
        bail!("{}: no training examples to export", ds.path(Split::Train).display());
    }
    let name = lane
        .adapter
        .as_deref()
        .and_then(|a| Path::new(a).file_name())
        .map_or_else(|| format!("{}-axolotl", lane.id), |n| format!("{}-axolotl", n.to_string_lossy()));
    let output_dir = format!("outputs/{name}");
    let pad = pad_token(ws, lane, &base);
    let setup = axolotl::Setup {
        base_model: &base,
        targets: &targets,
        pad_token: pad.as_deref(),
        has_valid: n_valid > 0,
        output_dir: &output_dir,
    };
    let config = axolotl::config(&opts.config, &setup);
    let (config_path, readme_path) = (args.out.join("config.yml"), args.out.join("README.txt"));
    let data = args.out.join("data");
    let (train_path, valid_path) = (data.join("train.jsonl"), data.join("valid.jsonl"));
    fresh(&[&config_path, &readme_path, &train_path, &valid_path])?;
    std::fs::create_dir_all(&data).with_context(|| data.display().to_string())?;
    write_atomic(&train_path, train.as_bytes())?;
    if n_valid > 0 {
        write_atomic(&valid_path, valid.as_bytes())?;
    }
    write_atomic(&config_path, config.as_bytes())?;
    let readme = format!(
        "config.yml: the LoRA training `tunebench train` runs on this workspace (rank {}, alpha {}, {}, lr {}, \
         {} schedule,\n{} epochs, batch {}, sequence length {}, seed {}), for axolotl over {base}; data/: the \
         train ({n_train}) and valid\n({n_valid}) splits, each example trained on its last answer alone (message \
         `training`), no meta.\n\nRun it on a GPU machine (one or several GPUs):\n  axolotl train config.yml\n\
         Its adapter lands in {output_dir}/ in PEFT's format: copy that folder into the workspace's adapters/ \
         and name it\nas a lane's adapter (over the same base model, GGUF or safetensors) to compare it.\n",
        opts.config.rank,
        opts.config.alpha,
        if targets.is_empty() { "every linear layer".to_string() } else { targets.join(", ") },
        opts.config.lr,
        match opts.config.schedule {
            crate::lora::train::Schedule::Cosine => "cosine",
            crate::lora::train::Schedule::Linear => "linear",
        },
        opts.config.epochs,
        opts.config.batch,
        opts.config.max_seq_len,
        opts.config.seed,
    );
    write_atomic(&readme_path, readme.as_bytes())?;
    println!(
        "wrote {} ({n_train} train, {n_valid} valid examples) and {}",
        config_path.display(),
        readme_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
