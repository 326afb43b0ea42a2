//! Random weights at a real model's shapes, written as a llama.cpp `qwen2` GGUF (q/k/v biases, tied head,
//! NEOX rope) in one quantized type, so tunebench and llama.cpp can be timed on the same file without
//! downloading the model. Files are cached under a name that hashes everything their bytes depend on.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

/// Bumped whenever the writer changes what it writes, so a stale cached file is never reused.
const GENERATOR: &str = "random-qwen2-gguf v1";

/// A Qwen2-family shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Names the cached file and the bench's rows.
    pub name: &'static str,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    /// Rows of the embedding (and so of the tied output head).
    pub vocab: usize,
    /// Id of `<|endoftext|>`; `<|im_start|>` and `<|im_end|>` follow it, as in Qwen's vocabulary.
    pub first_special: usize,
    pub rope_theta: f32,
    pub context: usize,
}

/// Qwen2.5-0.5B(-Instruct)'s config.json shapes.
pub const QWEN25_05B: Shape = Shape {
    name: "qwen2.5-0.5b-shape",
    hidden: 896,
    layers: 24,
    heads: 14,
    kv_heads: 2,
    ffn: 4864,
    vocab: 151_936,
    first_special: 151_643,
    rope_theta: 1_000_000.0,
    context: 32_768,
};

/// Qwen2.5-1.5B(-Instruct)'s config.json shapes: the LoRA section's model of the size people fine-tune.
/// (Unused by the tests that include this file.)
#[allow(dead_code)]
pub const QWEN25_15B: Shape = Shape {
    name: "qwen2.5-1.5b-shape",
    hidden: 1536,
    layers: 28,
    heads: 12,
    kv_heads: 2,
    ffn: 8960,
    vocab: 151_936,
    first_special: 151_643,
    rope_theta: 1_000_000.0,
    context: 32_768,
};

/// SmolLM2-135M's sizes in the qwen2 layout (its q/k/v biases are the only extra work, 0.01 % of a token's):
/// the GPU rows, where the shipped file is not at hand. (Unused by the tests that include this file.)
#[allow(dead_code)]
pub const SMOLLM2_135M: Shape = Shape {
    name: "smollm2-135m-shape",
    hidden: 576,
    layers: 30,
    heads: 9,
    kv_heads: 3,
    ffn: 1536,
    vocab: 49_152,
    first_special: 49_149,
    rope_theta: 100_000.0,
    context: 8_192,
};

/// A tiny qwen2 shape: what the tests that include this file write and load (not the bench itself).
#[allow(dead_code)]
pub const TINY: Shape = Shape {
    name: "tiny-qwen2",
    hidden: 64,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    ffn: 128,
    vocab: 300,
    first_special: 290,
    rope_theta: 1_000_000.0,
    context: 256,
};

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
/// A few byte-level merges: llama.cpp and tunebench both want a merge list; no text is tokenized here.
const MERGES: [(&str, &str); 4] = [("Ġ", "t"), ("Ġ", "a"), ("i", "n"), ("e", "r")];

impl Shape {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// Weights in the file (embedding counted once: the head is tied).
    pub fn params(&self) -> usize {
        let (h, kv) = (self.hidden, self.kv_heads * self.head_dim());
        let layer = h * h * 2 + h * kv * 2 + 3 * h * self.ffn + h + kv * 2 + h * 2;
        self.vocab * h + self.layers * layer + h
    }

    /// The file for `dtype` under `dir`, written first unless a file of the same content is already there;
    /// true when this call wrote it.
    pub fn cached(&self, dtype: GgmlDType, dir: &Path) -> Result<(PathBuf, bool)> {
        self.cached_with(dtype, dir, None)
    }

    /// `cached`, with the tokenizer (every `tokenizer.*` key) of the GGUF `vocab` (a llama.cpp vocabulary file,
    /// `scripts/fetch-vocabs`) instead of the byte-level one: text then tokenizes as the real model's would, for
    /// runs that take text prompts (the batch section on a GPU, the LoRA section's llama.cpp lane). Its token count
    /// must be the shape's.
    #[allow(dead_code)]
    pub fn cached_with_vocab(&self, dtype: GgmlDType, dir: &Path, vocab: &Path) -> Result<(PathBuf, bool)> {
        self.cached_with(dtype, dir, Some(vocab))
    }

    fn cached_with(&self, dtype: GgmlDType, dir: &Path, vocab: Option<&Path>) -> Result<(PathBuf, bool)> {
        let mut key = Sha256::new();
        key.update(format!("{GENERATOR} {self:?} {dtype:?}"));
        let tokenizer = match vocab {
            Some(v) => {
                let bytes = std::fs::read(v).with_context(|| format!("reading {}", v.display()))?;
                key.update(&bytes);
                Some(tokenizer_keys(v, &bytes, self.vocab)?)
            }
            None => None,
        };
        let key: String = key.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("{}-{dtype:?}-{key}.gguf", self.name));
        if path.is_file() {
            return Ok((path, false));
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        self.write_with(dtype, &path, tokenizer)?;
        Ok((path, true))
    }

    /// Writes the GGUF atomically (temporary file, fsync, rename): a run stopped halfway leaves no file
    /// that a later run would take for a finished one.
    #[allow(dead_code)]
    pub fn write(&self, dtype: GgmlDType, path: &Path) -> Result<()> {
        self.write_with(dtype, path, None)
    }

    fn write_with(&self, dtype: GgmlDType, path: &Path, tokenizer: Option<Vec<(String, Value)>>) -> Result<()> {
        let tensors = self.tensors(dtype)?;
        let mut md = self.metadata();
        if let Some(keys) = tokenizer {
            md.retain(|(k, _)| !k.starts_with("tokenizer."));
            md.extend(keys);
        }
        let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let written = (|| -> Result<()> {
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut w = std::io::BufWriter::new(&mut f);
            gguf_file::write(&mut w, &md_refs, &t_refs).with_context(|| format!("writing {}", tmp.display()))?;
            w.flush().with_context(|| format!("writing {}", tmp.display()))?;
            drop(w);
            f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
        })();
        if written.is_err() {
            // Half a model file is disk space nobody will reuse.
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// llama.cpp's tensor names; every matrix in `dtype` (the tied embedding too), norms and biases f32.
    fn tensors(&self, dtype: GgmlDType) -> Result<Vec<(String, QTensor)>> {
        let (h, kv) = (self.hidden, self.kv_heads * self.head_dim());
        let mut seed = 0u64;
        let mut next = |shape: &[usize], scale: f32, offset: f32| {
            seed += 1;
            uniform(shape, seed, scale, offset)
        };
        let quantize = |name: &str, t: Tensor, dt: GgmlDType| {
            QTensor::quantize(&t, dt).with_context(|| format!("quantizing {name} to {dt:?}"))
        };
        // Init std 0.02 (transformers' initializer_range), norm scales near 1, small non-zero biases.
        let w = 0.02 * 3f32.sqrt();
        let mut out = vec![
            ("token_embd.weight".to_string(), quantize("token_embd.weight", next(&[self.vocab, h], w, 0.0)?, dtype)?),
            ("output_norm.weight".to_string(), quantize("output_norm.weight", next(&[h], 0.1, 1.0)?, GgmlDType::F32)?),
        ];
        for l in 0..self.layers {
            let matrices = [
                ("attn_q", [h, h]),
                ("attn_k", [kv, h]),
                ("attn_v", [kv, h]),
                ("attn_output", [h, h]),
                ("ffn_gate", [self.ffn, h]),
                ("ffn_up", [self.ffn, h]),
                ("ffn_down", [h, self.ffn]),
            ];
            for (stem, shape) in matrices {
                let name = format!("blk.{l}.{stem}.weight");
                let t = quantize(&name, next(&shape, w, 0.0)?, dtype)?;
                out.push((name, t));
            }
            for (stem, n) in [("attn_q", h), ("attn_k", kv), ("attn_v", kv)] {
                let name = format!("blk.{l}.{stem}.bias");
                let t = quantize(&name, next(&[n], 0.02, 0.0)?, GgmlDType::F32)?;
                out.push((name, t));
            }
            for stem in ["attn_norm", "ffn_norm"] {
                let name = format!("blk.{l}.{stem}.weight");
                let t = quantize(&name, next(&[h], 0.1, 1.0)?, GgmlDType::F32)?;
                out.push((name, t));
            }
        }
        Ok(out)
    }

    /// The keys llama.cpp's `qwen2` loader and tunebench's read, and a byte-level vocabulary of `vocab`
    /// tokens: the 256 byte symbols, a few merges, Qwen's special tokens at their ids, `[PADn]` fillers
    /// (unused, as convert_hf_to_gguf.py names the rows a tokenizer leaves empty).
    fn metadata(&self) -> Vec<(String, Value)> {
        let mut tokens: Vec<String> = byte_symbols().into_iter().map(String::from).collect();
        tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
        let mut types = vec![1i32; tokens.len()];
        while tokens.len() < self.vocab {
            let id = tokens.len();
            if let Some(s) = id.checked_sub(self.first_special).and_then(|i| SPECIALS.get(i)) {
                tokens.push(s.to_string());
                types.push(3);
            } else {
                tokens.push(format!("[PAD{id}]"));
                types.push(5);
            }
        }
        let arch = "qwen2";
        let u32v = |n: usize| Value::U32(n as u32);
        vec![
            ("general.architecture".into(), Value::String(arch.into())),
            ("general.name".into(), Value::String(format!("{} (random weights)", self.name))),
            (format!("{arch}.context_length"), u32v(self.context)),
            (format!("{arch}.embedding_length"), u32v(self.hidden)),
            (format!("{arch}.block_count"), u32v(self.layers)),
            (format!("{arch}.feed_forward_length"), u32v(self.ffn)),
            (format!("{arch}.attention.head_count"), u32v(self.heads)),
            (format!("{arch}.attention.head_count_kv"), u32v(self.kv_heads)),
            (format!("{arch}.attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
            (format!("{arch}.rope.freq_base"), Value::F32(self.rope_theta)),
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String("qwen2".into())),
            ("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().map(Value::String).collect())),
            ("tokenizer.ggml.token_type".into(), Value::Array(types.into_iter().map(Value::I32).collect())),
            (
                "tokenizer.ggml.merges".into(),
                Value::Array(MERGES.iter().map(|(a, b)| Value::String(format!("{a} {b}"))).collect()),
            ),
            ("tokenizer.ggml.bos_token_id".into(), u32v(self.first_special)),
            ("tokenizer.ggml.eos_token_id".into(), u32v(self.first_special + 2)),
            ("tokenizer.ggml.padding_token_id".into(), u32v(self.first_special)),
            ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
            ("tokenizer.chat_template".into(), Value::String(TEMPLATE.into())),
        ]
    }
}

/// Every `tokenizer.*` key of the GGUF `bytes` (read from `path`), which must hold `vocab` tokens.
fn tokenizer_keys(path: &Path, bytes: &[u8], vocab: usize) -> Result<Vec<(String, Value)>> {
    let content = gguf_file::Content::read(&mut std::io::Cursor::new(bytes))
        .with_context(|| format!("reading {} as GGUF", path.display()))?;
    let count = match content.metadata.get("tokenizer.ggml.tokens") {
        Some(Value::Array(t)) => t.len(),
        _ => anyhow::bail!("{}: no tokenizer.ggml.tokens", path.display()),
    };
    if count != vocab {
        anyhow::bail!("{}: {count} tokens, but the shape has {vocab}", path.display());
    }
    let mut keys: Vec<(String, Value)> =
        content.metadata.into_iter().filter(|(k, _)| k.starts_with("tokenizer.")).collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keys)
}

/// GPT-2's byte-to-symbol alphabet, by byte value.
fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut shifted = 0;
    (0u32..256)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                shifted += 1;
                255 + shifted
            };
            char::from_u32(c).unwrap_or('?')
        })
        .collect()
}

/// `offset` + values uniform in [-scale, scale), from a splitmix64 stream per tensor: the same numbers on
/// every machine, so a cached file and a fresh one are the same file.
fn uniform(shape: &[usize], seed: u64, scale: f32, offset: f32) -> Result<Tensor> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let unit = (z >> 40) as f32 / (1u64 << 24) as f32;
            offset + (unit * 2.0 - 1.0) * scale
        })
        .collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}
