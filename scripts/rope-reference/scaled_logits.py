"""transformers' logits of family fixtures run with a rope scaling their config.json does not have, for
tests/rope.rs to hold tunebench's to (config.json with the same rope_parameters, and for yarn the GGUF with
llama.cpp's yarn keys). Writes tests/fixtures/rope/scaled_logits.safetensors: per case `<case>.logits` F32
[n, vocab] over the fixture's `ids` (f32, eager attention).

Run from the repository root, once, with the reference venv (never by CI):
    /work/venv-ref/bin/python scripts/rope-reference/scaled_logits.py
"""

import json
import tempfile
from pathlib import Path
import shutil

import torch
import transformers
from safetensors.torch import load_file, save_file

FIXTURES = Path("tests/fixtures/families")
CASES = {
    # case: (family fixture, rope_parameters)
    "qwen2_yarn": ("qwen2", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                             "rope_theta": 1000000.0}),
    "llama2_linear": ("llama2", {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}),
}


def main():
    out = {}
    for case, (family, params) in CASES.items():
        ids = load_file(str(FIXTURES / family / "expected.safetensors"))["ids"]
        with tempfile.TemporaryDirectory() as tmp:
            hf = Path(tmp) / "hf"
            shutil.copytree(FIXTURES / family / "hf", hf)
            config = json.loads((hf / "config.json").read_text())
            config["rope_parameters"] = params
            (hf / "config.json").write_text(json.dumps(config))
            model = transformers.AutoModelForCausalLM.from_pretrained(hf, attn_implementation="eager",
                                                                      dtype=torch.float32).eval()
            with torch.no_grad():
                logits = model(ids.reshape(1, -1)).logits[0]
            plain = load_file(str(FIXTURES / family / "expected.safetensors"))["logits"]
            print(f"{case}: the scaling moves the logits by {float((logits - plain).abs().max()):.3f}")
        out[f"{case}.logits"] = logits.contiguous()
    path = Path("tests/fixtures/rope/scaled_logits.safetensors")
    save_file(out, str(path), metadata={"transformers": transformers.__version__})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
