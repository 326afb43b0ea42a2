"""The "adapter loads in PEFT" proof: applies an adapter folder (written by `tunebench train`) with PEFT to a
fixture's hf/ model in transformers (f32, eager attention) and compares the logits at every position with
tunebench's own, read from a safetensors file holding `ids` (I64 [n]) and `logits` (F32 [n, vocab]) — what
`tunebench logits --out` and tests/support/families.rs's check_training write.

Usage: check_adapter.py HF_DIR ADAPTER_DIR TUNEBENCH_LOGITS.safetensors [--tolerance 1e-3]
Exit status 0 when max |diff| <= tolerance, 1 otherwise (2 when the adapter does not load)."""

import argparse
import json
import sys

import torch
import transformers
from peft import PeftModel
from safetensors.torch import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("adapter_dir")
    ap.add_argument("logits")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    args = ap.parse_args()
    theirs = load_file(args.logits)
    for key in ("ids", "logits"):
        if key not in theirs:
            sys.exit(f"{args.logits}: no tensor `{key}`")
    ids = theirs["ids"].to(torch.int64).reshape(1, -1)
    base = transformers.AutoModelForCausalLM.from_pretrained(args.hf_dir, attn_implementation="eager",
                                                            dtype=torch.float32).eval()
    with torch.no_grad():
        plain = base(ids).logits[0]
    try:
        model = PeftModel.from_pretrained(base, args.adapter_dir).eval()
    except Exception as e:  # noqa: BLE001 - any loading failure is the finding
        print(json.dumps({"adapter": args.adapter_dir, "loads_in_peft": False, "error": str(e)}))
        sys.exit(2)
    with torch.no_grad():
        ours = model(ids).logits[0]
    want = theirs["logits"].float()
    if want.shape != ours.shape:
        sys.exit(f"{args.logits}: logits {tuple(want.shape)}, PEFT computes {tuple(ours.shape)}")
    diff = float((ours - want).abs().max())
    report = {
        "adapter": args.adapter_dir,
        "loads_in_peft": True,
        "modules_adapted": sum(1 for n, _ in model.named_modules() if n.endswith("lora_A.default")),
        "max_abs_diff": diff,
        "tolerance": args.tolerance,
        # An adapter that changes nothing would pass trivially: say how far it moves the base.
        "adapter_moves_logits_by": float((ours - plain).abs().max()),
        "max_abs_logit": float(want.abs().max()),
    }
    print(json.dumps(report))
    sys.exit(0 if diff <= args.tolerance else 1)


if __name__ == "__main__":
    main()
