"""Every family fixture's logits from `tunebench logits` on the GPU against transformers' (expected.safetensors)
and against the same command on the CPU: both forms (model.gguf, hf/), without and with the fixture's adapter.
Usage: python3 gpu-parity.py TUNEBENCH FAMILIES_DIR [DEVICE] — exits 1 when a difference passes 1e-3."""
import os
import subprocess
import sys
import tempfile

from safetensors.numpy import load_file

tb, root = sys.argv[1], sys.argv[2]
device = sys.argv[3] if len(sys.argv) > 3 else "cuda:0"
TOL = 1e-3
worst, failed = 0.0, []
tmp = tempfile.mkdtemp()


def logits(model, ids, adapter, dev):
    out = os.path.join(tmp, "l.safetensors")
    cmd = [tb, "logits", "--model", model, "--ids", ",".join(map(str, ids)), "--device", dev, "--out", out]
    if adapter:
        cmd += ["--adapter", adapter]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    return load_file(out)["logits"]


for fam in sorted(os.listdir(root)):
    d = os.path.join(root, fam)
    exp = load_file(os.path.join(d, "expected.safetensors"))
    ids = [int(i) for i in exp["ids"]]
    for form in ("model.gguf", "hf"):
        for adapter in (None, os.path.join(d, "adapter")):
            key = "logits_adapter" if adapter else "logits"
            # A GGUF has no sliding-window key: the fixture's `_full` logits are the window-off ones.
            if form == "model.gguf" and key + "_full" in exp:
                key += "_full"
            label = f"{fam:9} {form:10} {'adapter' if adapter else 'base':7}"
            try:
                gpu = logits(os.path.join(d, form), ids, adapter, device)
                cpu = logits(os.path.join(d, form), ids, adapter, "cpu")
            except RuntimeError as e:
                failed.append(label)
                print(f"{label} FAILED: {e}")
                continue
            vs_hf = float(abs(gpu - exp[key]).max())
            vs_cpu = float(abs(gpu - cpu).max())
            top1 = float((gpu.argmax(-1) == exp[key].argmax(-1)).mean())
            worst = max(worst, vs_hf)
            ok = vs_hf <= TOL
            if not ok:
                failed.append(label)
            print(f"{label} gpu-vs-transformers {vs_hf:.2e}  gpu-vs-cpu {vs_cpu:.2e}  top1 {top1:.3f}  {'ok' if ok else 'OVER'}")
print(f"worst gpu-vs-transformers {worst:.2e} (tolerance {TOL}); {len(failed)} failed: {failed}")
sys.exit(1 if failed else 0)
