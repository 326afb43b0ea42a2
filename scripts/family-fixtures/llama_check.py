"""llama.cpp's own logits on each fixture's model.gguf (llama_logits.cpp, built against a llama.cpp build of the
same sdist) against expected.safetensors: proof that the GGUF and the expected values agree as llama.cpp reads
them. Usage: llama_check.py LLAMA_LOGITS_BINARY [FAMILY...]"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[2] / "tests/fixtures/families"


def check(binary, fam):
    d = ROOT / fam
    e = load_file(d / "expected.safetensors")
    ids = e["ids"].tolist()
    full = "logits_full" in e
    want, want_greedy = (e["logits_full"], e["greedy_full"]) if full else (e["logits"], e["greedy"])
    n, vocab = want.shape
    g = len(want_greedy)
    with tempfile.NamedTemporaryFile() as f:
        subprocess.run([binary, str(d / "model.gguf"), str(n + g), str(g), f.name] + [str(i) for i in ids],
                       check=True)
        raw = Path(f.name).read_bytes()
    logits = np.frombuffer(raw[: n * vocab * 4], dtype=np.float32).reshape(n, vocab)
    greedy = np.frombuffer(raw[n * vocab * 4:], dtype=np.int32)
    diff = float(np.abs(logits - want).max())
    same = greedy.tolist() == want_greedy.tolist()
    key = "logits_full" if full else "logits"
    print(f"{fam}: llama.cpp vs {key}: max |diff| {diff:.2e}, greedy {'identical' if same else 'DIFFERS'}"
          f" (max |logit| {float(np.abs(want).max()):.1f})")
    return diff <= 1e-3 and same


def main():
    binary, fams = sys.argv[1], sys.argv[2:] or sorted(p.name for p in ROOT.iterdir())
    ok = [check(binary, f) for f in fams]
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
