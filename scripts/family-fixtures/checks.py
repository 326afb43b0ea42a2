"""Coherence of a family's written files: transformers reloads hf/ to the same logits, and the GGUF reads back
in gguf-py with the family's architecture, the expected metadata and tensors, and the weights of hf/."""

import sys
from pathlib import Path

import numpy as np
import torch
import transformers

sys.path.insert(0, "/work/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp/gguf-py")
import gguf  # noqa: E402

# GGUF architecture and the tensors every block of the family must have (llama.cpp names).
GGUF = {
    "llama2": ("llama", ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]),
    "llama3": ("llama", ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]),
    "mistral": ("llama", ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]),
    "qwen2": ("qwen2", ["attn_q", "attn_q.bias", "attn_k.bias", "attn_v.bias", "attn_output", "ffn_gate"]),
    "qwen3": ("qwen3", ["attn_q", "attn_q_norm", "attn_k_norm", "attn_output", "ffn_gate"]),
    "smollm3": ("smollm3", ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]),
    "gemma2": ("gemma2", ["attn_q", "attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm", "ffn_gate"]),
    "gemma3": ("gemma3", ["attn_q", "attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm"]),
    "phi3": ("phi3", ["attn_qkv", "attn_output", "ffn_up", "ffn_down"]),
    "phi4mini": ("phi3", ["attn_qkv", "attn_output", "ffn_up", "ffn_down"]),
}


def _field(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    return f.contents()


def run(d: Path, fam: dict, model, ids, logits):
    name = d.name
    out = {}
    again = transformers.AutoModelForCausalLM.from_pretrained(d / "hf", attn_implementation="eager",
                                                             dtype=torch.float32).eval()
    with torch.no_grad():
        out["hf_reload_max_diff"] = float((again(torch.tensor([ids])).logits[0] - logits).abs().max())
    assert out["hf_reload_max_diff"] == 0.0, out

    r = gguf.GGUFReader(d / "model.gguf")
    arch, block = GGUF[name]
    assert _field(r, "general.architecture") == arch, (name, _field(r, "general.architecture"))
    tensors = {t.name: t for t in r.tensors}
    layers = model.config.num_hidden_layers
    for layer in range(layers):
        for t in block:
            full = f"blk.{layer}.{t}" + ("" if t.endswith(".bias") else ".weight")
            assert full in tensors, f"{name}: {full} missing from model.gguf"
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in r.tensors), "f32 throughout"
    vocab = model.config.vocab_size
    tokens = _field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == vocab, (name, len(tokens), vocab)
    emb = tensors["token_embd.weight"]
    hf_emb = model.get_input_embeddings().weight.detach().numpy()
    gg = np.asarray(emb.data).reshape(hf_emb.shape)
    assert np.array_equal(gg, hf_emb), f"{name}: token_embd differs from embed_tokens"
    # Gemma's converter adds 1 to norm weights: the GGUF holds the effective scale.
    n0 = np.asarray(tensors["blk.0.attn_norm.weight"].data)
    hf_n0 = model.model.layers[0].input_layernorm.weight.detach().numpy()
    shift = 1.0 if fam["norm"] == "gemma" else 0.0
    assert np.allclose(n0, hf_n0 + shift), f"{name}: attn_norm is not input_layernorm + {shift}"
    out["gguf_tensors"] = len(r.tensors)
    out["gguf_output_tensor"] = "output.weight" in tensors
    out["gguf_pre"] = _field(r, "tokenizer.ggml.pre")
    out["gguf_keys"] = {k: _field(r, k) for k in r.fields
                        if k.startswith(arch + ".") and not isinstance(_field(r, k), list)}
    for k in ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight"):
        if k in tensors:
            out["gguf_keys"][k] = [round(float(x), 5) for x in np.asarray(tensors[k].data)]
    return out
