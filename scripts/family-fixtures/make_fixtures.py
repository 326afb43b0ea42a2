"""Writes tests/fixtures/families/<fam>/: a tiny random transformers model (hf/), its llama.cpp conversion
(model.gguf), a PEFT LoRA adapter (adapter/) and the logits transformers computes (expected.safetensors).
Run once by a person (never by CI): see README.md beside this file for the command and versions."""

import argparse
import copy
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file

import ablations
import checks
import toks
from families import FAMILIES

LLAMA_CPP = Path("/work/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp")
N_IDS = 24
N_GREEDY = 8
TOKENIZER_VOCAB = 320  # the trainers' target; the model's vocabulary is what the tokenizer ends up with
MIN_MARGIN = 0.05  # smallest top-1/top-2 logit gap allowed on a greedy step


def init_weights(model, fam, seed):
    """Every feature must matter: norm scales != 1, biases != 0, q/k large enough that attention is sharp (and
    soft-caps bite), logits of order 10."""
    g = torch.Generator().manual_seed(seed)
    gemma = fam["norm"] == "gemma"
    tied = model.config.tie_word_embeddings
    hidden = model.config.hidden_size

    def normal(shape, std):
        return torch.randn(shape, generator=g) * std

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                # Gemma stores the scale as an offset from 1.
                off = (torch.rand(p.shape, generator=g) - 0.5)
                p.copy_(off if gemma else 1.0 + off)
            elif name.endswith(".bias"):
                p.copy_(normal(p.shape, 0.5))
            elif "embed_tokens" in name:
                # A tied table is the head too: logits = h . E, with |h| ~ sqrt(hidden).
                p.copy_(normal(p.shape, 3.0 / math.sqrt(hidden) if tied else 1.0))
            elif "lm_head" in name:
                p.copy_(normal(p.shape, 3.0 / math.sqrt(hidden)))
            elif name.endswith(".weight") and p.dim() == 2:
                fan_in = p.shape[1]
                qk = any(k in name for k in ("q_proj", "k_proj", "qkv_proj"))
                gain = fam.get("qk_gain", 2.5) if qk else 1.0
                p.copy_(normal(p.shape, gain / math.sqrt(fan_in)))
            else:
                raise SystemExit(f"{name}: no init rule for this parameter")


def build(fam, vocab, overrides=None):
    kw = copy.deepcopy(fam["config"])
    kw.update(overrides or {})
    cfg = getattr(transformers, fam["cls"])(vocab_size=vocab, **kw)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    return model.eval()


@torch.no_grad()
def logits_of(model, ids):
    return model(torch.tensor([ids])).logits[0].float()


@torch.no_grad()
def greedy(model, ids, n=N_GREEDY):
    """Argmax continuation recomputed from the whole sequence each step (no cache, no stop token), and the
    smallest top-1/top-2 margin seen, so a near-tie that would make the test fragile shows."""
    seq, margin = list(ids), float("inf")
    for _ in range(n):
        last = model(torch.tensor([seq])).logits[0, -1]
        top = torch.topk(last, 2).values
        margin = min(margin, float(top[0] - top[1]))
        seq.append(int(last.argmax()))
    return seq[len(ids):], margin


def convert(hf, out, pre):
    """llama.cpp's convert_hf_to_gguf.py, f32. A trimmed vocabulary cannot pass its pre-tokenizer hash check,
    so for BPE vocabularies the check returns the family's name instead (patched in memory, no copy)."""
    patch = (
        "import sys, runpy; sys.path.insert(0, %r); sys.path.insert(1, %r);"
        "import conversion.base as b;"
        "b.TextModel.get_vocab_base_pre = (lambda self, tok: %r) if %r else b.TextModel.get_vocab_base_pre;"
        "sys.argv = ['convert_hf_to_gguf.py', %r, '--outtype', 'f32', '--outfile', %r];"
        "runpy.run_path(%r, run_name='__main__')"
    ) % (str(LLAMA_CPP), str(LLAMA_CPP / "gguf-py"), pre, pre is not None, str(hf), str(out),
         str(LLAMA_CPP / "convert_hf_to_gguf.py"))
    subprocess.run([sys.executable, "-c", patch], check=True, capture_output=True)


def make_adapter(model, fam, seed, out):
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=fam["modules"], lora_dropout=0.0, bias="none",
                     task_type="CAUSAL_LM")
    peft = get_peft_model(copy.deepcopy(model), cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    peft.eval()
    peft.peft_config["default"].base_model_name_or_path = None
    peft.save_pretrained(out)
    (out / "README.md").unlink()  # PEFT's empty model card
    # PEFT writes target_modules in set order (which varies run to run): sorted, so a rerun rewrites no file.
    cfg_file = out / "adapter_config.json"
    saved = json.loads(cfg_file.read_text())
    saved["target_modules"] = sorted(saved["target_modules"])
    cfg_file.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    return PeftModel.from_pretrained(copy.deepcopy(model), out).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("families", nargs="*", default=list(FAMILIES))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "tests/fixtures/families")
    args = ap.parse_args()
    for name in args.families:
        fam = FAMILIES[name]
        seed = 1000 + 17 * list(FAMILIES).index(name)
        d = args.out / name
        if d.exists():
            shutil.rmtree(d)
        hf = d / "hf"
        hf.mkdir(parents=True)
        vocab, special_ids = toks.write(hf, fam, TOKENIZER_VOCAB)
        fam = dict(fam, config=dict(fam["config"], **special_ids))
        torch.manual_seed(seed)
        model = build(fam, vocab)
        init_weights(model, fam, seed)
        model.save_pretrained(hf, safe_serialization=True)
        convert(hf, d / "model.gguf", fam["pre"])

        peft = make_adapter(model, fam, seed, d / "adapter")
        # Each model the fixture holds results of, under its key suffix: "" for transformers' own model and,
        # where llama.cpp's GGUF has no window key (Mistral), "_full": the same weights with the window off.
        variants = {"": (model, peft)}
        if fam.get("gguf_has_no_window"):
            full = build(fam, vocab, {"sliding_window": None})
            full.load_state_dict(model.state_dict())
            variants["_full"] = (full, PeftModel.from_pretrained(copy.deepcopy(full), d / "adapter").eval())
        # The first ids whose greedy continuations never come near a tie: a decoder within 1e-3 of
        # transformers must then pick the same tokens.
        for attempt in range(100):
            g = torch.Generator().manual_seed(seed + 2 + attempt)
            ids = torch.randint(3, vocab, (N_IDS,), generator=g).tolist()
            runs = {sfx: (greedy(m, ids), greedy(p, ids)) for sfx, (m, p) in variants.items()}
            margins = {sfx: [r[0][1], r[1][1]] for sfx, r in runs.items()}
            if min(min(v) for v in margins.values()) >= MIN_MARGIN:
                break
        else:
            raise SystemExit(f"{name}: no ids with greedy margins >= {MIN_MARGIN}")
        out = {"ids": torch.tensor(ids, dtype=torch.int64)}
        for sfx, (m, p) in variants.items():
            out["logits" + sfx] = logits_of(m, ids).contiguous()
            out["logits_adapter" + sfx] = logits_of(p, ids).contiguous()
            out["greedy" + sfx] = torch.tensor(runs[sfx][0][0], dtype=torch.int64)
            out["greedy_adapter" + sfx] = torch.tensor(runs[sfx][1][0], dtype=torch.int64)
        logits = out["logits"]
        report = {"family": name, "vocab": vocab, "n_ids": N_IDS, "max_abs_logit": float(logits.abs().max()),
                  "adapter_moves_logits_by": float((out["logits_adapter"] - logits).abs().max()),
                  "greedy_min_margins": margins}
        if "_full" in variants:
            report["window_off_moves_logits_by"] = float((out["logits_full"] - logits).abs().max())
        save_file(out, d / "expected.safetensors", metadata={"family": name, "made_by": "make_fixtures.py"})
        report["ablations"] = ablations.measure(fam, vocab, model, ids, logits, build)
        report["checks"] = checks.run(d, fam, model, ids, logits)
        (d / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report))


if __name__ == "__main__":
    main()
