//! The files both engines run, made once into target/bench-models/: SmolLM2-135M in Q4_0, Q8_0 and Q4_K_M
//! (llama.cpp's `llama-quantize` from an F16 GGUF this module writes from the shipped Q4_1 file, which is
//! the Q4_1 row itself), and Qwen2.5-0.5B's shape with random weights (random_gguf.rs writes Q8_0 and Q4_0;
//! Q4_K_M is `llama-quantize` of its F16 file). Cached names hash what the bytes depend on.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use sha2::{Digest, Sha256};

use crate::random_gguf::{QWEN25_05B, Shape};

/// Bumped whenever the F16 writer changes what it writes.
const F16_WRITER: &str = "bench f16-from-gguf v1";
/// GGUF's `general.file_type` for an F16 file (LLAMA_FTYPE_MOSTLY_F16).
const FTYPE_F16: u32 = 1;

/// One (model, format) row's file.
pub struct BenchFile {
    pub model: String,
    pub format: &'static str,
    pub path: PathBuf,
}

/// Where the made files are cached: the build's target folder, never the repository.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
    .join("bench-models")
}

/// The tools build's llama-quantize (LLAMA_QUANTIZE overrides), when built.
fn quantizer() -> Option<PathBuf> {
    let bin = std::env::var_os("LLAMA_QUANTIZE")
        .map_or_else(|| crate::llama::llama_dir().join("build/bin/llama-quantize"), PathBuf::from);
    bin.is_file().then_some(bin)
}

/// SmolLM2's rows among `formats` (Q4_1 is the shipped file; the rest need llama-quantize: without it they
/// are left out, and said so).
pub fn smollm2(shipped: &Path, formats: &[&'static str]) -> Result<Vec<BenchFile>> {
    let model = "SmolLM2-135M-Instruct";
    let mut out = Vec::new();
    let mut f16 = None;
    for &format in formats {
        let path = if format == "Q4_1" {
            shipped.to_path_buf()
        } else {
            let Some(q) = quantizer() else {
                eprintln!("bench: no llama-quantize built (scripts/bench --build-llama): SmolLM2 {format} left out");
                continue;
            };
            if f16.is_none() {
                f16 = Some(smollm2_f16(shipped)?);
            }
            let src = f16.as_deref().context("the F16 file")?;
            quantized(&q, src, format)?
        };
        out.push(BenchFile { model: model.to_string(), format, path });
    }
    Ok(out)
}

/// The Qwen2.5-0.5B-shape rows among `formats`.
pub fn qwen2(formats: &[&'static str]) -> Result<Vec<BenchFile>> {
    random(QWEN25_05B, "Qwen2.5-0.5B", formats)
}

/// Random-weight files of `shape` in `formats` (Q4_0 and Q8_0 written here; the rest by llama-quantize from
/// an F16 file when it is built, else left out, said on stderr).
pub fn random(shape: Shape, label: &str, formats: &[&'static str]) -> Result<Vec<BenchFile>> {
    let mut out = Vec::new();
    for &format in formats {
        let path = match format {
            "Q8_0" => timed(|| shape.cached(GgmlDType::Q8_0, &cache_dir()))?,
            "Q4_0" => timed(|| shape.cached(GgmlDType::Q4_0, &cache_dir()))?,
            _ => {
                let Some(q) = quantizer() else {
                    eprintln!(
                        "bench: no llama-quantize built (scripts/bench --build-llama): {} {format} left out",
                        shape.name
                    );
                    continue;
                };
                let f16 = timed(|| shape.cached(GgmlDType::F16, &cache_dir()))?;
                quantized(&q, &f16, format)?
            }
        };
        let model = format!("{label} shape, random weights ({:.0}M)", shape.params() as f64 / 1e6);
        out.push(BenchFile { model, format, path });
    }
    Ok(out)
}

fn timed(make: impl FnOnce() -> Result<(PathBuf, bool)>) -> Result<PathBuf> {
    let t = Instant::now();
    let (path, wrote) = make()?;
    if wrote {
        eprintln!("bench: wrote {} in {:.1} s (later runs reuse it)", path.display(), t.elapsed().as_secs_f64());
    }
    Ok(path)
}

/// `src` (an F16 GGUF) through `llama-quantize` into `format`, beside it; reused when already made.
fn quantized(quantize: &Path, src: &Path, format: &str) -> Result<PathBuf> {
    let stem = src.file_stem().map(|s| s.to_string_lossy().replace("-F16", "")).unwrap_or_default();
    let dst = src.with_file_name(format!("{stem}-{format}.gguf"));
    if dst.is_file() {
        return Ok(dst);
    }
    let tmp = dst.with_extension(format!("tmp-{}", std::process::id()));
    let t = Instant::now();
    let out = Command::new(quantize)
        .arg(src)
        .arg(&tmp)
        .arg(format)
        .output()
        .with_context(|| format!("running {}", quantize.display()))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "llama-quantize {} {format} failed ({}): {}",
            src.display(),
            out.status,
            err.lines().last().unwrap_or("")
        );
    }
    std::fs::rename(&tmp, &dst).with_context(|| format!("renaming {} to {}", tmp.display(), dst.display()))?;
    eprintln!("bench: llama-quantize wrote {} in {:.1} s", dst.display(), t.elapsed().as_secs_f64());
    Ok(dst)
}

/// The shipped file with every quantized tensor dequantized to F16 (F32 tensors kept), all metadata kept
/// (general.file_type set to F16): the source llama-quantize makes the other formats from, as one would
/// from a converted checkpoint. Named by a hash of the source's bytes and of this writer.
fn smollm2_f16(shipped: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(shipped).with_context(|| format!("reading {}", shipped.display()))?;
    let mut key = Sha256::new();
    key.update(F16_WRITER);
    key.update(&bytes);
    drop(bytes);
    let key: String = key.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let dir = cache_dir();
    let path = dir.join(format!("SmolLM2-135M-Instruct-{key}-F16.gguf"));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let t = Instant::now();
    let mut f = std::fs::File::open(shipped).with_context(|| format!("opening {}", shipped.display()))?;
    let ct = gguf_file::Content::read(&mut f).with_context(|| format!("reading {}", shipped.display()))?;
    // The source's tensor order, so the F16 file lists them as the original does.
    let by_offset: BTreeMap<u64, &String> = ct.tensor_infos.iter().map(|(n, i)| (i.offset, n)).collect();
    let mut tensors = Vec::with_capacity(by_offset.len());
    for name in by_offset.values() {
        let q = ct.tensor(&mut f, name, &Device::Cpu).with_context(|| format!("reading tensor {name}"))?;
        let t = match q.dtype() {
            GgmlDType::F32 | GgmlDType::F16 => q,
            _ => QTensor::quantize(&q.dequantize(&Device::Cpu)?, GgmlDType::F16)
                .with_context(|| format!("converting {name} to F16"))?,
        };
        tensors.push(((*name).clone(), t));
    }
    let mut md = ct.metadata.clone();
    md.insert("general.file_type".into(), Value::U32(FTYPE_F16));
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = (|| -> Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        gguf_file::write(&mut out, &md_refs, &t_refs)?;
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(std::fs::rename(&tmp, &path)?)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", path.display())));
    }
    eprintln!("bench: wrote {} in {:.1} s (later runs reuse it)", path.display(), t.elapsed().as_secs_f64());
    Ok(path)
}

/// The file's tensor types, most weights first (e.g. "Q4_K 60% · Q6_K 20% · …"), and its size in MB.
pub fn describe(path: &Path) -> Result<(String, f64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let ct = gguf_file::Content::read(&mut f).with_context(|| format!("reading {}", path.display()))?;
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for info in ct.tensor_infos.values() {
        if info.shape.dims().len() < 2 {
            continue;
        }
        let n = info.shape.elem_count();
        *by_type.entry(tunebench::engine::local::type_name(info.ggml_dtype)).or_default() += n;
        total += n;
    }
    let mut types: Vec<(String, usize)> = by_type.into_iter().collect();
    types.sort_by_key(|t| std::cmp::Reverse(t.1));
    let mix = if types.len() == 1 {
        types[0].0.clone()
    } else {
        let pct = |n: usize| 100.0 * n as f64 / total.max(1) as f64;
        types.iter().map(|(t, n)| format!("{t} {:.0}%", pct(*n))).collect::<Vec<_>>().join(" · ")
    };
    let mb = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len() as f64 / 1e6;
    Ok((mix, mb))
}
