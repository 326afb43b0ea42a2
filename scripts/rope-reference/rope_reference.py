"""Rope inverse frequencies and attention factors as transformers computes them, for the rope settings
tests/rope.rs loads through config.json (on the llama3 family fixture's shape: head_dim 16,
max_position_embeddings 256). Writes tests/fixtures/rope/transformers.json.

Run from the repository root, once, with the reference venv (never by CI):
    /work/venv-ref/bin/python scripts/rope-reference/rope_reference.py
"""

import json
from pathlib import Path

import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

CASES = {
    "linear": {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
    "llama3": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
        "rope_theta": 500000.0,
    },
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "rope_theta": 1000000.0},
    "yarn_mscale": {
        "rope_type": "yarn",
        "factor": 8.0,
        "original_max_position_embeddings": 64,
        "rope_theta": 10000.0,
        "mscale": 0.707,
        "mscale_all_dim": 1.0,
        "beta_fast": 16,
        "beta_slow": 2,
        "truncate": False,
    },
    # Within max_position_embeddings (the model's whole context) dynamic NTK leaves the frequencies alone.
    "dynamic": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
}


def main():
    out = {"transformers": transformers.__version__, "cases": {}}
    for name, params in CASES.items():
        config = LlamaConfig(
            hidden_size=64, num_attention_heads=4, head_dim=16, max_position_embeddings=256, rope_parameters=dict(params)
        )
        inv, attention = ROPE_INIT_FUNCTIONS[params["rope_type"]](config, "cpu", seq_len=256)
        out["cases"][name] = {
            "rope_parameters": params,
            "inv_freq": [float(x) for x in inv],
            "attention_factor": float(attention),
        }
    path = Path("tests/fixtures/rope/transformers.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
