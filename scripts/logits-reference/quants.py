#!/usr/bin/env python3
"""Record transformers' logits for tests/fixtures/quants/every-type.gguf (tests/quant_types.rs).

The GGUF (written by `cargo test --test quant_types -- --ignored write_every_type_fixture`) holds a tiny llama
whose matrices are each in another GGML type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K.
transformers dequantizes it with llama.cpp's gguf-py and runs it in f32 with eager attention; the logits at
every position of a fixed id sequence go to expected.safetensors (`ids` i64 [n], `logits` f32 [n, vocab]).

Run once by a person, never by CI:
  /work/venv-ref/bin/python scripts/logits-reference/quants.py tests/fixtures/quants
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM

folder = os.path.abspath(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(
    folder, gguf_file="every-type.gguf", dtype=torch.float32, attn_implementation="eager"
)
model.eval()
ids = [5, 77, 104, 200, 31, 260, 12, 99, 150, 3, 41, 250, 7, 64, 128, 255]
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0].float().numpy()
save_file({"ids": np.array(ids, dtype=np.int64), "logits": logits}, os.path.join(folder, "expected.safetensors"))
print(logits.shape)
