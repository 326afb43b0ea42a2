"""What each family's tiny model is: its transformers config (modelled on a real checkpoint), the PEFT modules,
the GGUF pre-tokenizer name, and the features whose removal the generator measures."""

# Shapes shared by every family unless a family says otherwise: hidden 64, 4 heads of 16, 2 kv heads (GQA),
# 4 layers, MLP 128. The vocabulary size is the tokenizer's (set by make_fixtures.py), so the converter
# neither pads nor trims the embedding and the GGUF's logits are as wide as transformers'.
HIDDEN = 64
HEADS = 4
KV_HEADS = 2
LAYERS = 4
FFN = 128
WINDOW = 8  # every windowed family's window; the sequence (24 ids + 8 greedy) is longer

LLAMA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PHI_MODULES = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]


def _base(**kw):
    c = dict(
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HIDDEN // HEADS,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
    )
    c.update(kw)
    return c


def _longrope(original, dims, seed, theta=10000.0, partial=None):
    """Distinct short and long factor sets (so choosing the wrong one moves the logits)."""
    short = [round(1.0 + 0.05 * i + 0.01 * ((i * seed) % 7), 4) for i in range(dims // 2)]
    long = [round(1.0 + 0.9 * i + 0.1 * ((i * seed) % 5), 4) for i in range(dims // 2)]
    p = {"rope_type": "longrope", "rope_theta": theta, "short_factor": short, "long_factor": long,
         "original_max_position_embeddings": original}
    if partial is not None:
        p["partial_rotary_factor"] = partial
    return p


# Each family: transformers config class and kwargs, the tokenizer kind ("spm" trains a SentencePiece model
# and writes tokenizer.model; "bpe" a byte-level BPE tokenizer.json), the GGUF pre-tokenizer name the converter
# writes for a BPE vocabulary (its hash check cannot know a trimmed vocabulary), special tokens, the norm kind
# ("gemma": weight stored as an offset from 1), PEFT target modules, what the config exercises, and ablations:
# (label, config overrides, state-dict edit) — each must move the logits well beyond 1e-3.
FAMILIES = {
    "llama2": dict(
        model="Llama-2-7b (MHA there; GQA here), SentencePiece vocabulary, untied head",
        cls="LlamaConfig", tok="spm", pre=None,
        config=_base(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=False),
        specials=dict(bos="<s>", eos="</s>", unk="<unk>"), extra_specials=[],
        template="llama2", modules=LLAMA_MODULES, norm="plain",
        exercises="plain Llama: RMSNorm with scales != 1, SwiGLU, rope theta 10000 (GGUF: q/k rows permuted), "
                  "GQA 4/2, untied lm_head",
        ablate=["norm_scales", "untie"],
    ),
    "llama3": dict(
        model="Llama-3.2-1B", cls="LlamaConfig", tok="bpe", pre="llama-bpe",
        config=_base(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 64},
                     tie_word_embeddings=True),
        specials=dict(bos="<|begin_of_text|>", eos="<|eot_id|>"),
        extra_specials=["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>"],
        template="meta-llama-Llama-3.2-3B-Instruct.jinja", modules=LLAMA_MODULES, norm="plain",
        exercises="rope_scaling llama3 (factor 8, low 1, high 4, original_max_position_embeddings 64: of the 8 rotary "
                  "pairs one keeps its frequency, one is interpolated, six are divided by 8; GGUF: baked into rope_freqs.weight), theta 500000, tied head",
        ablate=["norm_scales", "rope_scaling"],
    ),
    "mistral": dict(
        model="Mistral-7B-v0.1", cls="MistralConfig", tok="spm", pre=None,
        config=_base(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, sliding_window=WINDOW,
                     tie_word_embeddings=False),
        specials=dict(bos="<s>", eos="</s>", unk="<unk>"), extra_specials=[],
        template="mistral", modules=LLAMA_MODULES, norm="plain", gguf_has_no_window=True,
        exercises=f"sliding_window {WINDOW} < sequence (the GGUF has no window key: compare it with "
                  "logits_full), untied head, SentencePiece vocabulary",
        ablate=["window"],
    ),
    "qwen2": dict(
        model="Qwen2.5-0.5B", cls="Qwen2Config", tok="bpe", pre="qwen2",
        config=_base(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True,
                     sliding_window=WINDOW, use_sliding_window=False, max_window_layers=LAYERS, rms_norm_eps=1e-6),
        specials=dict(bos=None, eos="<|im_end|>", pad="<|endoftext|>"), extra_specials=["<|im_start|>"],
        template="Qwen-Qwen2.5-7B-Instruct.jinja", modules=LLAMA_MODULES, norm="plain",
        exercises=f"q/k/v biases (not o), theta 1e6, tied head; config carries sliding_window {WINDOW} with "
                  "use_sliding_window false (must NOT apply); GGUF q/k rows not permuted",
        ablate=["bias", "norm_scales", "window_applied"],
    ),
    "qwen3": dict(
        model="Qwen3-0.6B", cls="Qwen3Config", tok="bpe", pre="qwen2",
        config=_base(head_dim=32, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                     tie_word_embeddings=True, attention_bias=False, rms_norm_eps=1e-6),
        specials=dict(bos=None, eos="<|im_end|>", pad="<|endoftext|>"),
        extra_specials=["<|im_start|>", "<think>", "</think>"],
        template="Qwen-Qwen3-0.6B.jinja", modules=LLAMA_MODULES, norm="plain",
        exercises="per-head q/k RMSNorm before rope, explicit head_dim 32 (heads x head_dim = 128 != hidden 64), "
                  "theta 1e6, tied head",
        ablate=["qk_norm", "norm_scales"],
    ),
    "smollm3": dict(
        model="SmolLM3-3B", cls="SmolLM3Config", tok="bpe", pre="smollm",
        config=_base(rope_parameters={"rope_type": "default", "rope_theta": 2000000.0}, tie_word_embeddings=True,
                     no_rope_layers=[1, 1, 1, 0], no_rope_layer_interval=4, rms_norm_eps=1e-6),
        specials=dict(bos=None, eos="<|im_end|>", pad="<|im_end|>"),
        extra_specials=["<|im_start|>", "<|endoftext|>", "<think>", "</think>"],
        template="HuggingFaceTB-SmolLM3-3B.jinja", modules=LLAMA_MODULES, norm="plain",
        exercises="no rope on every 4th layer (layer 3 of 4), theta 2e6, tied head; GGUF q/k rows permuted",
        ablate=["nope_layers", "norm_scales"],
    ),
    "gemma2": dict(
        model="gemma-2-2b", cls="Gemma2Config", tok="spm", pre=None,
        config=_base(query_pre_attn_scalar=HIDDEN // HEADS, sliding_window=WINDOW,
                     layer_types=["sliding_attention", "full_attention"] * (LAYERS // 2),
                     attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                     hidden_activation="gelu_pytorch_tanh",
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                     tie_word_embeddings=True, rms_norm_eps=1e-6),
        specials=dict(bos="<bos>", eos="<eos>", unk="<unk>", pad="<pad>"),
        extra_specials=["<start_of_turn>", "<end_of_turn>"],
        template="google-gemma-2-2b-it.jinja", modules=LLAMA_MODULES, norm="gemma",
        qk_gain=5.0,  # attention scores of order 50, so the soft-cap at 50 bends them
        exercises=f"four norms per block with (1+w), embeddings x sqrt(hidden), GeGLU (tanh GELU), attention "
                  f"soft-cap 50 and final soft-cap 30, window {WINDOW} on even layers, query_pre_attn_scalar = "
                  "head_dim (as gemma-2-2b; llama.cpp assumes it), tied head",
        ablate=["attn_softcap", "final_softcap", "window", "norm_scales", "embed_scale", "gelu_exact"],
    ),
    "gemma3": dict(
        model="gemma-3-1b (linear scaling on global layers as gemma-3-4b)", cls="Gemma3TextConfig", tok="spm",
        pre=None,
        config=_base(num_hidden_layers=6, query_pre_attn_scalar=HIDDEN // HEADS, sliding_window=WINDOW,
                     layer_types=["sliding_attention"] * 5 + ["full_attention"],
                     hidden_activation="gelu_pytorch_tanh",
                     rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0,
                                                         "rope_theta": 1000000.0},
                                      "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
                     tie_word_embeddings=True, rms_norm_eps=1e-6),
        specials=dict(bos="<bos>", eos="<eos>", unk="<unk>", pad="<pad>"),
        extra_specials=["<start_of_turn>", "<end_of_turn>"],
        template="gemma3", modules=LLAMA_MODULES, norm="gemma",
        exercises=f"6 layers, 5:1 local/global (layer 5 global), window {WINDOW}, local rope base 10000, global "
                  "base 1e6 with linear factor 8, q/k norm (1+w), four norms per block, tied head",
        ablate=["window", "qk_norm", "rope_scaling", "local_rope_base", "norm_scales", "gelu_exact"],
    ),
    "phi3": dict(
        model="Phi-3.5-mini (MHA as there)", cls="Phi3Config", tok="spm", pre=None,
        config=_base(num_key_value_heads=HEADS, max_position_embeddings=64, original_max_position_embeddings=16,
                     rope_parameters=_longrope(16, HIDDEN // HEADS, 3), sliding_window=262144,
                     tie_word_embeddings=False),
        specials=dict(bos="<s>", eos="<|endoftext|>", unk="<unk>"),
        extra_specials=["<|end|>", "<|user|>", "<|assistant|>", "<|system|>"],
        template="microsoft-Phi-3.5-mini-instruct.jinja", modules=PHI_MODULES, norm="plain",
        exercises="fused qkv_proj and gate_up_proj, longrope with original_max_position_embeddings 16 < the "
                  "24-id sequence (transformers then uses long_factor for every position; llama.cpp picks "
                  "long_factor when the context is > 16) and attention factor sqrt(1+ln4/ln16) from "
                  "max_position_embeddings 64, untied head",
        ablate=["longrope_short", "attn_factor", "norm_scales"],
    ),
    "phi4mini": dict(
        model="Phi-4-mini", cls="Phi3Config", tok="bpe", pre="gpt-4o",
        config=_base(max_position_embeddings=2048, original_max_position_embeddings=512,
                     rope_parameters=_longrope(512, int(HIDDEN // HEADS * 0.75), 5, partial=0.75),
                     sliding_window=None, tie_word_embeddings=True),
        specials=dict(bos="<|endoftext|>", eos="<|end|>", pad="<|endoftext|>"),
        extra_specials=["<|user|>", "<|assistant|>", "<|system|>"],
        template="phi4mini", modules=PHI_MODULES, norm="plain", tokenizer_class="GPT2Tokenizer",
        exercises="partial rotary 0.75 (12 of 16 dims rotate), longrope with original_max_position_embeddings "
                  "512 > sequence (short_factor everywhere; 512 also exceeds llama.cpp's smallest context, 256, "
                  "so llama.cpp picks short_factor too) and attention factor sqrt(1+ln4/ln512), fused "
                  "projections, GQA 4/2, tied head",
        ablate=["partial_rotary", "longrope_long", "norm_scales"],
    ),
}
