#!/usr/bin/env python3
"""Record transformers' logits on a real model's GGUF for tests/logits.rs.

transformers loads the GGUF dequantized to f32 (eager attention, f32 compute): the reference `tunebench logits`
must match within 1e-3 at every position. The whole [n, vocab] matrix is too big to commit, so the fixture keeps,
per position, the 10 largest logits and the logits of a fixed spread of ids across the vocabulary.

Run once by a person, never by CI (needs torch, transformers, gguf):
  /work/venv-ref/bin/python scripts/logits-reference/real_model.py \
      models/SmolLM2-135M-Instruct.Q4_1.gguf tests/fixtures/smollm2_transformers_logits.json
  /work/venv-ref/bin/python scripts/logits-reference/real_model.py \
      models/gemma-3-270m-Q4_K_M.gguf tests/fixtures/gemma3_270m_transformers_logits.json
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

# Raw ids, no BOS and no template: `tunebench logits --text` tokenizes the first text the same way; the second
# holds the model's own turn markers (recognised here, so the ids carry them as control tokens).
CHAT = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": "<|im_start|>user\nWrite a haiku about autumn leaves.<|im_end|>\n<|im_start|>assistant\n",
    "gemma-3-270m-Q4_K_M.gguf": "<start_of_turn>user\nWrite a haiku about autumn leaves.<end_of_turn>\n<start_of_turn>model\n",
}
TEXTS = ["Order #4411 arrived broken; I want a refund of $25.99.", CHAT[name]]
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
    "command": f"/work/venv-ref/bin/python scripts/logits-reference/real_model.py models/{name} "
    f"tests/fixtures/{os.path.basename(out_path)}",
    "cases": cases,
}
with open(out_path, "w") as f:
    json.dump(fixture, f, indent=1)
    f.write("\n")
print(out_path, [len(c["ids"]) for c in cases])
