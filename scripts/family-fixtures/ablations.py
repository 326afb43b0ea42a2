"""How far the logits move when one feature of a family is taken away: the evidence that the fixture would catch
a decoder that forgets it (each must move the logits well beyond the harness's 1e-3)."""

import copy
import math

import torch


def _norms_to_identity(sd, gemma, only=None):
    for k in sd:
        if k.endswith("norm.weight") and (only is None or any(o in k for o in only)):
            sd[k] = torch.zeros_like(sd[k]) if gemma else torch.ones_like(sd[k])


def _rope(fam, **changes):
    p = copy.deepcopy(fam["config"]["rope_parameters"])
    p.update(changes)
    return {"rope_parameters": p}


def _variant(fam, label, sd):
    """(config overrides, state dict, forward option) without the feature `label`."""
    gemma = fam["norm"] == "gemma"
    rope = fam["config"].get("rope_parameters", {})
    if label == "norm_scales":
        _norms_to_identity(sd, gemma)
        return {}, sd, None
    if label == "qk_norm":
        _norms_to_identity(sd, gemma, only=("q_norm", "k_norm"))
        return {}, sd, None
    if label == "bias":
        for k in sd:
            if k.endswith(".bias"):
                sd[k] = torch.zeros_like(sd[k])
        return {}, sd, None
    if label == "untie":
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"].clone()
        return {}, sd, None
    if label == "window":
        return {"sliding_window": 4096}, sd, None
    if label == "window_applied":
        # What a loader that applied Qwen2's window despite use_sliding_window false would compute.
        return {"use_sliding_window": True, "max_window_layers": 0}, sd, None
    if label == "rope_scaling":
        if "full_attention" in rope:
            p = copy.deepcopy(rope)
            p["full_attention"] = {"rope_type": "default", "rope_theta": p["full_attention"]["rope_theta"]}
            return {"rope_parameters": p}, sd, None
        return {"rope_parameters": {"rope_type": "default", "rope_theta": rope["rope_theta"]}}, sd, None
    if label == "local_rope_base":
        # Gemma 3's local layers on the global base (llama.cpp hardcodes 10000 for them).
        p = copy.deepcopy(rope)
        p["sliding_attention"] = dict(p["sliding_attention"], rope_theta=p["full_attention"]["rope_theta"])
        return {"rope_parameters": p}, sd, None
    if label == "gelu_exact":
        return {"hidden_activation": "gelu"}, sd, None
    if label == "nope_layers":
        return {"no_rope_layers": [1] * fam["config"]["num_hidden_layers"]}, sd, None
    if label == "attn_softcap":
        return {"attn_logit_softcapping": None}, sd, None
    if label == "final_softcap":
        return {"final_logit_softcapping": None}, sd, None
    if label == "embed_scale":
        return {}, sd, "unscaled_embeddings"
    if label == "longrope_short":
        return _rope(fam, long_factor=rope["short_factor"]), sd, None
    if label == "longrope_long":
        return _rope(fam, short_factor=rope["long_factor"]), sd, None
    if label == "attn_factor":
        return _rope(fam, attention_factor=1.0), sd, None
    if label == "partial_rotary":
        half = fam["config"]["head_dim"] // 2
        pad = lambda xs: xs + [1.0] * (half - len(xs))  # noqa: E731
        return _rope(fam, partial_rotary_factor=1.0, short_factor=pad(rope["short_factor"]),
                     long_factor=pad(rope["long_factor"])), sd, None
    raise SystemExit(f"unknown ablation {label}")


def measure(fam, vocab, model, ids, logits, build):
    out = {}
    for label in fam["ablate"]:
        overrides, sd, option = _variant(fam, label, {k: v.clone() for k, v in model.state_dict().items()})
        m = build(fam, vocab, overrides)
        m.load_state_dict(sd)
        with torch.no_grad():
            if option == "unscaled_embeddings":
                emb = m.model.embed_tokens(torch.tensor([ids])) / math.sqrt(m.config.hidden_size)
                got = m(inputs_embeds=emb).logits[0]
            else:
                got = m(torch.tensor([ids])).logits[0]
        out[label] = float((got - logits).abs().max())
    return out
