//! A tiny llama with random weights, written by the tests as a GGUF file (q/k rows permuted the way
//! llama.cpp's converter does) and as a safetensors folder with the same weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

pub const HIDDEN: usize = 64;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const LAYERS: usize = 2;
pub const FFN: usize = 128;
pub const CONTEXT: usize = 256;
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// The GPT-2 byte alphabet, a few merges, then the special tokens.
pub fn vocab() -> (Vec<String>, Vec<(String, String)>) {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
    pairs.sort();
    let mut tokens: Vec<String> = pairs.iter().map(|(_, c)| char::from_u32(*c).unwrap().to_string()).collect();
    let merges: Vec<(String, String)> = [("h", "e"), ("l", "l"), ("he", "ll"), ("o", "r"), ("Ġ", "w"), ("Ġw", "or")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    for (a, b) in &merges {
        tokens.push(format!("{a}{b}"));
    }
    tokens.extend(SPECIALS.iter().map(|s| s.to_string()));
    (tokens, merges)
}

fn rand(shape: &[usize], seed: u64) -> Tensor {
    // Deterministic small weights without an RNG dependency: a sine of the index and seed.
    let n: usize = shape.iter().product();
    let v: Vec<f32> =
        (0..n).map(|i| ((i as f32 * 12.9898 + seed as f32 * 78.233).sin() * 43758.547).fract() * 0.2).collect();
    // bf16-exact, so the GGUF (f32) and safetensors (bf16) copies hold the same numbers.
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap().to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap()
}

/// llama.cpp's convert_hf_to_gguf permutation of q/k rows (pairs interleaved per head).
pub fn permute(w: &Tensor, heads: usize) -> Tensor {
    let (out, inp) = w.dims2().unwrap();
    w.reshape((heads, 2, out / heads / 2, inp))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((out, inp))
        .unwrap()
        .contiguous()
        .unwrap()
}

/// Variations of the tiny model's metadata.
#[derive(Clone)]
pub struct Options {
    pub arch: &'static str,
    /// None: the model ships no chat template.
    pub template: Option<&'static str>,
    pub add_bos: bool,
    /// Overrides the EOS id (default: `<|im_end|>`).
    pub eos: Option<u32>,
    /// Overrides the BOS id (default: `<|im_start|>`, as SmolLM2 has it).
    pub bos: Option<u32>,
    /// Tie the output head to the embeddings (no output.weight / lm_head.weight), as SmolLM2 does.
    pub tied: bool,
    pub quant: Option<GgmlDType>,
    /// Scales the output head: random small weights cap the logits' range, and so how low a loss can go.
    pub head_scale: f64,
    /// Model width and MLP width (default `HIDDEN`, `FFN`); K-quants need rows of whole 256-blocks.
    pub hidden: usize,
    pub ffn: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            arch: "llama",
            template: Some(TEMPLATE),
            add_bos: false,
            eos: None,
            bos: None,
            tied: false,
            quant: None,
            head_scale: 1.0,
            hidden: HIDDEN,
            ffn: FFN,
        }
    }
}

/// The chatml template with the BOS token written by the template itself.
pub const BOS_TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Writes `tiny.gguf` (f32 tensors unless `quant`) and `tiny-hf/` under `dir`; returns both paths.
pub fn write(dir: &Path, quant: Option<GgmlDType>) -> (PathBuf, PathBuf) {
    write_with(dir, &Options { quant, ..Options::default() })
}

pub fn write_with(dir: &Path, o: &Options) -> (PathBuf, PathBuf) {
    let quant = o.quant;
    let (tokens, merges) = vocab();
    let vocab_n = tokens.len();
    let (hidden, ffn) = (o.hidden, o.ffn);
    let hd = hidden / HEADS;
    let mut hf: HashMap<String, Tensor> = HashMap::new();
    let mut gg: Vec<(String, Tensor)> = Vec::new();
    let mut seed = 1;
    let mut mk = |shape: &[usize]| {
        seed += 1;
        rand(shape, seed)
    };
    let embed = mk(&[vocab_n, hidden]);
    hf.insert("model.embed_tokens.weight".into(), embed.clone());
    gg.push(("token_embd.weight".into(), embed));
    let norm = (mk(&[hidden]) + 1.0).unwrap().to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
    hf.insert("model.norm.weight".into(), norm.clone());
    gg.push(("output_norm.weight".into(), norm));
    let head = (mk(&[vocab_n, hidden]) * o.head_scale).unwrap();
    if !o.tied {
        hf.insert("lm_head.weight".into(), head.clone());
        gg.push(("output.weight".into(), head));
    }
    for l in 0..LAYERS {
        let p = |m: &str| format!("model.layers.{l}.{m}.weight");
        let g = |m: &str| format!("blk.{l}.{m}.weight");
        let bf = |t: Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
        let an = bf((mk(&[hidden]) + 1.0).unwrap());
        let fnm = bf((mk(&[hidden]) + 1.0).unwrap());
        hf.insert(p("input_layernorm"), an.clone());
        gg.push((g("attn_norm"), an));
        hf.insert(p("post_attention_layernorm"), fnm.clone());
        gg.push((g("ffn_norm"), fnm));
        let shapes = [
            ("self_attn.q_proj", "attn_q", [HEADS * hd, hidden]),
            ("self_attn.k_proj", "attn_k", [KV_HEADS * hd, hidden]),
            ("self_attn.v_proj", "attn_v", [KV_HEADS * hd, hidden]),
            ("self_attn.o_proj", "attn_output", [hidden, HEADS * hd]),
            ("mlp.gate_proj", "ffn_gate", [ffn, hidden]),
            ("mlp.up_proj", "ffn_up", [ffn, hidden]),
            ("mlp.down_proj", "ffn_down", [hidden, ffn]),
        ];
        for (hf_name, gg_name, shape) in shapes {
            let w = mk(&shape);
            let gw = match gg_name {
                "attn_q" => permute(&w, HEADS),
                "attn_k" => permute(&w, KV_HEADS),
                _ => w.clone(),
            };
            hf.insert(p(hf_name), w);
            gg.push((g(gg_name), gw));
        }
    }
    // GGUF
    let gguf_path = dir.join("tiny.gguf");
    let q: Vec<(String, QTensor)> = gg
        .iter()
        .map(|(n, t)| {
            let dt = match quant {
                Some(d) if t.rank() == 2 && t.dim(1).unwrap() % d.block_size() == 0 => d,
                _ => GgmlDType::F32,
            };
            (n.clone(), QTensor::quantize(t, dt).unwrap())
        })
        .collect();
    let types: Vec<Value> =
        tokens.iter().map(|t| Value::I32(if SPECIALS.contains(&t.as_str()) { 3 } else { 1 })).collect();
    let mut md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String(o.arch.into())),
        ("llama.embedding_length", Value::U32(hidden as u32)),
        ("llama.block_count", Value::U32(LAYERS as u32)),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("llama.context_length", Value::U32(CONTEXT as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect())),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        (
            "tokenizer.ggml.merges",
            Value::Array(merges.iter().map(|(a, b)| Value::String(format!("{a} {b}"))).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(o.bos.unwrap_or(vocab_n as u32 - 2))),
        ("tokenizer.ggml.eos_token_id", Value::U32(o.eos.unwrap_or(vocab_n as u32 - 1))),
        ("tokenizer.ggml.add_bos_token", Value::Bool(o.add_bos)),
    ];
    if let Some(t) = o.template {
        md.push(("tokenizer.chat_template", Value::String(t.into())));
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = q.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(&gguf_path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();

    // safetensors folder
    let hf_dir = dir.join("tiny-hf");
    std::fs::create_dir_all(&hf_dir).unwrap();
    let hf: HashMap<String, Tensor> = hf.into_iter().map(|(k, v)| (k, v.to_dtype(DType::BF16).unwrap())).collect();
    candle_core::safetensors::save(&hf, hf_dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
                "architectures": [hf_architecture(o.arch)], "vocab_size": vocab_n, "hidden_size": hidden,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "intermediate_size": ffn, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": CONTEXT, "tie_word_embeddings": o.tied,
        "bos_token_id": vocab_n - 2, "eos_token_id": vocab_n - 1,
    });
    std::fs::write(hf_dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        hf_dir.join("tokenizer_config.json"),
        serde_json::json!({"chat_template": TEMPLATE, "add_bos_token": false}).to_string(),
    )
    .unwrap();
    write_tokenizer_json(&hf_dir.join("tokenizer.json"), &tokens, &merges);
    (gguf_path, hf_dir)
}

fn write_tokenizer_json(path: &Path, tokens: &[String], merges: &[(String, String)]) {
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::json!(i))).collect();
    let added: Vec<serde_json::Value> = SPECIALS
        .iter()
        .map(|s| serde_json::json!({"id": tokens.iter().position(|t| t == s).unwrap(), "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    let merges: Vec<String> = merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    std::fs::write(path, json.to_string()).unwrap();
}

/// config.json's class name for a GGUF architecture name (`falcon` → `FalconForCausalLM`).
fn hf_architecture(arch: &str) -> String {
    let mut chars = arch.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase().to_string()).unwrap_or_default();
    format!("{first}{}ForCausalLM", chars.as_str())
}
