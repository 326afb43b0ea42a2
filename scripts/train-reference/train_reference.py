"""PyTorch + PEFT training speed on the sequences `cargo bench --bench train` wrote: forward + backward of a
LoRA (all linear layers) over the same GGUF's weights (dequantized to f32 by transformers, as tunebench
does), batch 1 at each example's own length, the output head only at the answer positions
(`logits_to_keep`), the same thread count. Prints one JSON line: tokens/s, median of the runs.

Usage: python train_reference.py SEQS.jsonl MODEL.gguf RANK ALPHA THREADS RUNS
"""
import json
import os
import statistics
import sys
import time

seqs_path, gguf, rank, alpha, threads, runs = sys.argv[1:7]
threads, rank, runs = int(threads), int(rank), int(runs)
os.environ.setdefault("OMP_NUM_THREADS", str(threads))

import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

torch.set_num_threads(threads)
torch.manual_seed(1)
model = AutoModelForCausalLM.from_pretrained(
    os.path.dirname(os.path.abspath(gguf)), gguf_file=os.path.basename(gguf), torch_dtype=torch.float32
)
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=float(alpha), target_modules=targets, lora_dropout=0.0))
model.train()
seqs = [json.loads(line) for line in open(seqs_path)]


def step(batch):
    tokens = 0
    for s in batch:
        ids = torch.tensor([s["ids"]])
        keep = torch.tensor(s["positions"])
        logits = model(input_ids=ids, logits_to_keep=keep).logits[0]
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.tensor(s["targets"]))
        loss.backward()
        tokens += len(s["ids"])
    model.zero_grad(set_to_none=True)
    return tokens


step(seqs[:1])  # warm-up outside the clock
rates = []
for _ in range(runs):
    t = time.perf_counter()
    n = step(seqs)
    rates.append(n / (time.perf_counter() - t))
print(json.dumps({
    "tokens_per_s": statistics.median(rates), "min": min(rates), "max": max(rates), "runs": runs,
    "torch": torch.__version__, "threads": torch.get_num_threads(),
}))
