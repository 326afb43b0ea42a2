"""Loads adapters that tunebench trained (tests/family_peft.rs with TUNEBENCH_PEFT_DIR set) into PEFT on each
family fixture's hf/ model, and compares PEFT's logits with the ones tunebench served with the same adapter.

Run from the repository root with a reference venv, or all of it with scripts/peft-check (CI runs that):
    TUNEBENCH_PEFT_DIR=/tmp/peft-check cargo test --test family_peft
    /work/venv-ref/bin/python scripts/peft-reload/peft_reload.py /tmp/peft-check
Prints one line per family and form, and exits non-zero if any differs by more than 1e-3.
"""

import sys
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

TOLERANCE = 1e-3


def main(root: Path) -> int:
    fixtures = Path("tests/fixtures/families")
    worst = 0.0
    for family_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        family = family_dir.name
        for form_dir in sorted(p for p in family_dir.iterdir() if p.is_dir()):
            served = load_file(str(form_dir / "tunebench_logits.safetensors"))
            base = AutoModelForCausalLM.from_pretrained(
                fixtures / family / "hf", dtype=torch.float32, attn_implementation="eager"
            )
            model = PeftModel.from_pretrained(base, form_dir)
            model.eval()
            with torch.no_grad():
                logits = model(served["ids"].unsqueeze(0)).logits[0]
            # A GGUF without a window key (mistral: its fixture has `logits_full`) attends to every token: compare
            # it without the window. Gemma's GGUF keeps its window.
            no_window_key = "logits_full" in load_file(str(fixtures / family / "expected.safetensors"))
            if form_dir.name == "gguf" and no_window_key and getattr(base.config, "sliding_window", None):
                base.config.sliding_window = None
                for layer in base.model.layers:
                    if hasattr(layer.self_attn, "sliding_window"):
                        layer.self_attn.sliding_window = None
                with torch.no_grad():
                    logits = model(served["ids"].unsqueeze(0)).logits[0]
            diff = (logits - served["logits"]).abs().max().item()
            worst = max(worst, diff)
            modules = sorted(model.peft_config["default"].target_modules)
            print(f"{family:8} {form_dir.name:5} max |PEFT - tunebench| = {diff:.2e}  modules {modules}")
    print(f"worst {worst:.2e} (tolerance {TOLERANCE})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
