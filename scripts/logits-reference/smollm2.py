#!/usr/bin/env python3
"""Record transformers' logits on SmolLM2-135M-Instruct.Q4_1.gguf for tests/logits_real.rs.

transformers loads the GGUF dequantized to f32 (eager attention, f32 compute): the reference `tunebench logits`
must match within 1e-3 at every position. The whole [n, vocab] matrix is too big to commit, so the fixture keeps,
per position, the 10 largest logits and the logits of a fixed spread of ids across the vocabulary.

Run once by a person, never by CI (needs torch, transformers, gguf, safetensors):
  /work/venv-ref/bin/python scripts/logits-reference/smollm2.py \
      models/SmolLM2-135M-Instruct.Q4_1.gguf tests/fixtures/smollm2_transformers_logits.json
"""
import hashlib
import importlib.metadata
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf_path, out_path = sys.argv[1], sys.argv[2]
folder, name = os.path.split(os.path.abspath(gguf_path))
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(
    folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
)
model.eval()

# Raw ids, no BOS and no template: `tunebench logits --text` tokenizes the same way.
TEXTS = [
    "Order #4411 arrived broken; I want a refund of $25.99.",
    "<|im_start|>user\nWrite a haiku about autumn leaves.<|im_end|>\n<|im_start|>assistant\n",
]
cases = []
for text in TEXTS:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    vocab = logits.shape[1]
    probe = list(range(0, vocab, vocab // 16))
    top = torch.topk(logits, 10, dim=1)
    cases.append({
        "text": text,
        "ids": ids,
        "width": vocab,
        "top_ids": top.indices.tolist(),
        "top_logits": [[round(v, 5) for v in row] for row in top.values.tolist()],
        "probe_ids": probe,
        "probe_logits": [[round(v, 5) for v in row] for row in logits[:, probe].tolist()],
    })

sha = hashlib.sha256(open(gguf_path, "rb").read()).hexdigest()
versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ["transformers", "torch", "gguf"])
fixture = {
    "model_sha256": sha,
    "source": f"{versions}; GGUF dequantized to f32, eager attention, f32 compute",
    "command": "/work/venv-ref/bin/python scripts/logits-reference/smollm2.py "
    "models/SmolLM2-135M-Instruct.Q4_1.gguf tests/fixtures/smollm2_transformers_logits.json",
    "cases": cases,
}
with open(out_path, "w") as f:
    json.dump(fixture, f, indent=1)
    f.write("\n")
print(out_path, [len(c["ids"]) for c in cases])
