//! Structure-aware model files: a valid tiny GGUF (and safetensors) whose every length, count, type,
//! dimension, offset and metadata number is recorded, so one field at a time can be broken.

use crate::inputs::Gen;

/// A numeric field of the file: where it is and how wide.
#[derive(Clone, Copy)]
pub struct Field {
    pub at: usize,
    pub width: usize,
}

pub struct Built {
    pub bytes: Vec<u8>,
    pub fields: Vec<Field>,
}

const HIDDEN: u64 = 8;
const FFN: u64 = 16;
/// A llama vocabulary (SentencePiece: no BPE to build per input): control tokens, bytes, a few words.
const TOKENS: &[&str] =
    &["<unk>", "<s>", "</s>", "<0x0A>", "▁", "a", "b", "▁a", "▁b", "ab", "<|im_start|>", "<|im_end|>"];

enum V {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
}

struct W {
    b: Vec<u8>,
    fields: Vec<Field>,
}

impl W {
    fn num(&mut self, v: u64, width: usize) {
        self.fields.push(Field { at: self.b.len(), width });
        self.b.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    fn string(&mut self, s: &str) {
        self.num(s.len() as u64, 8);
        self.b.extend_from_slice(s.as_bytes());
    }
    fn value(&mut self, v: &V) {
        let (kind, f): (u64, &dyn Fn(&mut W)) = match v {
            V::U32(x) => (4, &|w: &mut W| w.num(*x as u64, 4)),
            V::F32(x) => (6, &|w: &mut W| w.num(x.to_bits() as u64, 4)),
            V::Bool(x) => (7, &|w: &mut W| w.num(*x as u64, 1)),
            V::Str(s) => (8, &|w: &mut W| w.string(s)),
            V::Strs(xs) => (9, &|w: &mut W| {
                w.num(8, 4);
                w.num(xs.len() as u64, 8);
                xs.iter().for_each(|s| w.string(s));
            }),
            V::I32s(xs) => (9, &|w: &mut W| {
                w.num(5, 4);
                w.num(xs.len() as u64, 8);
                xs.iter().for_each(|x| w.num(*x as u32 as u64, 4));
            }),
            V::F32s(xs) => (9, &|w: &mut W| {
                w.num(6, 4);
                w.num(xs.len() as u64, 8);
                xs.iter().for_each(|x| w.num(x.to_bits() as u64, 4));
            }),
        };
        self.num(kind, 4);
        f(self);
    }
}

/// The tiny model: one layer, width 8, two heads, f32 tensors, a chat template.
pub fn build() -> Built {
    let n = TOKENS.len() as u64;
    let md: Vec<(&str, V)> = vec![
        ("general.architecture", V::Str("llama".into())),
        ("general.alignment", V::U32(32)),
        ("llama.embedding_length", V::U32(HIDDEN as u32)),
        ("llama.block_count", V::U32(1)),
        ("llama.attention.head_count", V::U32(2)),
        ("llama.attention.head_count_kv", V::U32(1)),
        ("llama.attention.key_length", V::U32(4)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("llama.rope.freq_base", V::F32(10_000.0)),
        ("llama.context_length", V::U32(64)),
        ("llama.vocab_size", V::U32(n as u32)),
        ("tokenizer.ggml.model", V::Str("llama".into())),
        ("tokenizer.ggml.tokens", V::Strs(TOKENS.iter().map(|s| s.to_string()).collect())),
        ("tokenizer.ggml.token_type", V::I32s(vec![2, 3, 3, 6, 1, 1, 1, 1, 1, 1, 3, 3])),
        ("tokenizer.ggml.scores", V::F32s((0..n).map(|i| -(i as f32)).collect())),
        ("tokenizer.ggml.bos_token_id", V::U32(1)),
        ("tokenizer.ggml.eos_token_id", V::U32(11)),
        ("tokenizer.ggml.add_bos_token", V::Bool(true)),
        (
            "tokenizer.chat_template",
            V::Str("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}".into()),
        ),
    ];
    let (q, kv) = (2 * 4, 4);
    let tensors: Vec<(&str, Vec<u64>)> = vec![
        ("token_embd.weight", vec![HIDDEN, n]),
        ("output_norm.weight", vec![HIDDEN]),
        ("blk.0.attn_norm.weight", vec![HIDDEN]),
        ("blk.0.ffn_norm.weight", vec![HIDDEN]),
        ("blk.0.attn_q.weight", vec![HIDDEN, q]),
        ("blk.0.attn_k.weight", vec![HIDDEN, kv]),
        ("blk.0.attn_v.weight", vec![HIDDEN, kv]),
        ("blk.0.attn_output.weight", vec![q, HIDDEN]),
        ("blk.0.ffn_gate.weight", vec![HIDDEN, FFN]),
        ("blk.0.ffn_up.weight", vec![HIDDEN, FFN]),
        ("blk.0.ffn_down.weight", vec![FFN, HIDDEN]),
    ];
    let mut w = W { b: b"GGUF".to_vec(), fields: Vec::new() };
    w.num(3, 4);
    w.num(tensors.len() as u64, 8);
    w.num(md.len() as u64, 8);
    for (k, v) in &md {
        w.string(k);
        w.value(v);
    }
    let mut offset = 0u64;
    for (name, dims) in &tensors {
        w.string(name);
        w.num(dims.len() as u64, 4);
        dims.iter().for_each(|d| w.num(*d, 8));
        w.num(0, 4); // F32
        w.num(offset, 8);
        offset += (dims.iter().product::<u64>() * 4).div_ceil(32) * 32;
    }
    w.b.resize(w.b.len().div_ceil(32) * 32, 0);
    let data = w.b.len();
    w.b.resize(data + offset as usize, 0);
    for (i, x) in w.b[data..].chunks_exact_mut(4).enumerate() {
        x.copy_from_slice(&(((i % 7) as f32 - 3.0) * 0.05).to_le_bytes());
    }
    Built { bytes: w.b, fields: w.fields }
}

/// One field (sometimes two) set to an edge value of its width; now and then a byte-level mutation too.
pub fn break_fields(g: &mut Gen, base: &Built) -> Vec<u8> {
    let mut b = base.bytes.clone();
    for _ in 0..1 + usize::from(g.chance(0.25)) {
        let f = *g.pick(&base.fields);
        let old = u64::from_le_bytes({
            let mut x = [0u8; 8];
            x[..f.width].copy_from_slice(&b[f.at..f.at + f.width]);
            x
        });
        let max = if f.width == 8 { u64::MAX } else { (1u64 << (8 * f.width)) - 1 };
        let v = match g.below(10) {
            0 => 0,
            1 => max,
            2 => max / 2 + 1,
            3 => old.wrapping_add(1) & max,
            4 => old.wrapping_sub(1) & max,
            5 => old.wrapping_mul(1 << g.below(40)) & max,
            6 => 1u64.checked_shl(g.below(64) as u32).unwrap_or(0) & max,
            7 => (b.len() as u64) & max,
            _ => g.rng.random_range(0..=max),
        };
        b[f.at..f.at + f.width].copy_from_slice(&v.to_le_bytes()[..f.width]);
    }
    if g.chance(0.1) {
        let at = g.below(b.len());
        b.truncate(at.max(4));
    }
    b
}

use rand::Rng;

/// A valid safetensors file: a header naming two tensors (numbers recorded as fields), then their data.
pub fn safetensors(g: &mut Gen) -> Vec<u8> {
    let dtypes = ["F32", "F16", "BF16", "I64", "U8", "F64", "BOOL", "F8_E4M3", "X"];
    let mut header = String::from("{");
    let mut at = 0u64;
    let mut fields: Vec<String> = Vec::new();
    for (i, name) in ["model.embed_tokens.weight", "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
        .iter()
        .enumerate()
    {
        let dims = [2 + i as u64, 4];
        let bytes = dims.iter().product::<u64>() * 4;
        fields.push(format!(
            r#""{name}":{{"dtype":"F32","shape":[{},{}],"data_offsets":[{at},{}]}}"#,
            dims[0],
            dims[1],
            at + bytes
        ));
        at += bytes;
    }
    header.push_str(&fields.join(","));
    header.push_str(r#","__metadata__":{"format":"pt"}}"#);
    // Structure-aware: one number or dtype in the header replaced, or the length prefix broken.
    let mut h = header.into_bytes();
    match g.below(4) {
        0 => {
            let digits: Vec<usize> = h.iter().enumerate().filter(|(_, b)| b.is_ascii_digit()).map(|(i, _)| i).collect();
            let i = *g.pick(&digits);
            let end = h[i..].iter().position(|b| !b.is_ascii_digit()).map_or(h.len(), |e| i + e);
            let v = *g.pick(crate::inputs::NUMBERS);
            h.splice(i..end, v.bytes());
        }
        1 => {
            let s = String::from_utf8_lossy(&h).replacen("F32", g.word(&dtypes), 1 + g.below(2));
            h = s.into_bytes();
        }
        _ => {}
    }
    let mut len = h.len() as u64;
    if g.chance(0.2) {
        len = *g.pick(&[0, 1, 7, u64::MAX, u32::MAX as u64, len + 1, len.saturating_sub(1), 100_000_001]);
    }
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.resize(out.len() + at as usize, 0x3f);
    if g.chance(0.2) {
        out = g.mutate(&[&out], &["\"shape\":[", "\"data_offsets\":[", ",", "]", "}", "null", "[]"]);
    }
    out
}
