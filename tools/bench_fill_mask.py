#!/usr/bin/env python3
"""fill-mask on long inputs: time and peak memory of `bertrt run --task fill-mask` against
transformers' fill-mask pipeline (a committed compare script, not a timed test).

    python3 tools/bench_fill_mask.py [--binary target/release/bertrt] [--other OLD_BINARY]
                                     [--inputs 32] [--tokens 490]

Builds a random BertForMaskedLM with all-MiniLM-L6-v2's shape and its 30522-token
vocabulary (the tokenizer is the default model's) in a scratch folder, then answers
INPUTS texts of about TOKENS tokens, one [MASK] each, with every engine on the CPU: wall
time and peak RSS of each (bertrt and the other binary as their own processes; the
transformers pipeline in a child process too, with torch's threads = cores). Needs the
environment of tools/requirements-fixtures.txt and the default model (bertrt fetches it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def default_model_dir(binary: str) -> Path:
    subprocess.run([binary, "run", "--task", "embed", "--text", "x"], capture_output=True, check=True)
    cache = os.environ.get("BERTRT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bertrt")
    return Path(cache) / "models" / "all-MiniLM-L6-v2"


def build(dir: Path, minilm: Path) -> None:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512)
    BertForMaskedLM(config).eval().save_pretrained(dir, safe_serialization=True)
    BertTokenizerFast.from_pretrained(minilm).save_pretrained(dir)


def texts(n: int, tokens: int) -> list[str]:
    words = "the model reads every word of this long text and".split()
    out = []
    for i in range(n):
        body = [words[(i + j) % len(words)] for j in range(tokens - 3)]
        body[len(body) // 2] = "[MASK]"
        out.append(" ".join(body))
    return out


def measure(cmd: list[str], stdin: str) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB, stdout of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {out.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print(f"note: {cmd[0]}'s peak is not above an earlier child's; run engines in separate "
              "invocations to read it", file=sys.stderr)
    return took, peak / 1024, out.stdout


TRANSFORMERS = r"""
import json, sys, torch
from transformers import pipeline
torch.set_num_threads(int(sys.argv[2]))
fill = pipeline("fill-mask", model=sys.argv[1], device="cpu")
texts = [json.loads(l)["text"] for l in sys.stdin]
out = fill(texts, batch_size=len(texts))
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/bertrt")
    ap.add_argument("--other", help="a second bertrt binary (e.g. before a change)")
    ap.add_argument("--inputs", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=490)
    ap.add_argument("--only", choices=["bertrt", "other", "transformers"],
                    help="run one engine (peak RSS is per process: run each alone)")
    args = ap.parse_args()
    minilm = default_model_dir(args.binary)
    with tempfile.TemporaryDirectory(prefix="bertrt-fill-mask-") as tmp:
        dir = Path(tmp) / "mlm"
        build(dir, minilm)
        lines = "".join(json.dumps({"text": t}) + "\n" for t in texts(args.inputs, args.tokens))
        engines = {
            "bertrt": [args.binary, "run", "--task", "fill-mask", "--model", str(dir)],
            "transformers": [sys.executable, "-c", TRANSFORMERS, str(dir), str(os.cpu_count())],
        }
        if args.other:
            engines["other"] = [args.other, "run", "--task", "fill-mask", "--model", str(dir)]
        for name, cmd in engines.items():
            if args.only and name != args.only:
                continue
            took, peak, _ = measure(cmd, lines)
            print(json.dumps({"engine": name, "inputs": args.inputs, "tokens": args.tokens,
                              "seconds": round(took, 2), "peak_rss_mib": round(peak)}))


if __name__ == "__main__":
    main()
