#!/usr/bin/env python3
"""Compare bertrt's CUDA backend with PyTorch on one GPU, side by side in one run.

Engines, all on the BERT-base shape (12 layers, hidden 768, 12 heads, intermediate
3072; seeded random weights written by `bertrt bench --model bert-base`), fp16:

* bertrt          `bertrt bench --device cuda --dtype f16 --json` (graphs on; one
                  warm-up run per shape, then the median of --iters runs, wall clock,
                  inputs uploaded and outputs read back inside the timing).
* torch eager     transformers BertModel, fp16, attn_implementation="sdpa", eval,
                  inference_mode; synchronised wall clock per forward.
* torch.compile   the same module through torch.compile (default mode), after its own
                  warm-up; skipped with --no-compile.

Inputs: full attention masks, token type 0, the same deterministic ids as bertrt
bench. Shapes (--shapes): 1x128, 32x128, 8x512 by default. Targets from the issue are
printed next to the results (1x128 <= 0.25 ms, 32x128 <= 1.6 ms, 8x512 <= 1.8 ms).

Usage (from the repository root, on the GPU machine):

    python3 tools/compare_gpu.py --bertrt gpu-check/bertrt --iters 100

PyTorch rows are skipped (with the reason) when torch, transformers or a GPU is
missing. --json FILE saves every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

TARGETS_MS = {(1, 128): 0.25, (32, 128): 1.6, (8, 512): 1.8}


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for point in text.split(","):
        try:
            b, l = (int(x) for x in point.strip().lower().split("x"))
        except ValueError:
            raise SystemExit(f"--shapes: {point!r} is not BATCHxLEN") from None
        shapes.append((b, l))
    return shapes


def bertrt_cache() -> Path:
    for var, sub in (("BERTRT_CACHE", None), ("XDG_CACHE_HOME", "bertrt")):
        value = os.environ.get(var)
        if value:
            return Path(value) / sub if sub else Path(value)
    return Path.home() / ".cache" / "bertrt"


def bench_ids(b: int, l: int, vocab: int) -> list[list[int]]:
    # The same ids as `bertrt bench`.
    return [[(1000 + (r * 7919 + i * 104_729) % 20_000) % vocab for i in range(l)] for r in range(b)]


def run_bertrt(exe: str, shapes, iters: int) -> dict:
    cmd = [exe, "bench", "--model", "bert-base", "--device", "cuda", "--dtype", "f16", "--json",
           "--iters", str(iters), "--shapes", ",".join(f"{b}x{l}" for b, l in shapes)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bertrt bench failed: {done.stderr.strip()}")
    out = done.stdout
    rows = {}
    for line in out.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            rows[(r["batch"], r["len"])] = r["median_ms"]
    return rows


def run_torch(shapes, iters: int, compile_too: bool) -> tuple[dict, dict, str]:
    try:
        import torch
        from transformers import BertConfig, BertModel
    except ImportError as e:
        return {}, {}, f"PyTorch rows skipped: {e}"
    if not torch.cuda.is_available():
        return {}, {}, "PyTorch rows skipped: torch sees no GPU"
    folder = bertrt_cache() / "synthetic" / "bert-base"
    cfg = json.loads((folder / "config.json").read_text())
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size",
            "layer_norm_eps")
    config = BertConfig(**{k: cfg[k] for k in keys if cfg.get(k) is not None},
                        attn_implementation="sdpa")
    torch.manual_seed(0)
    model = BertModel(config).half().cuda().eval()

    def timed(fn, b, l):
        ids = torch.tensor(bench_ids(b, l, config.vocab_size), device="cuda")
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            for _ in range(3):
                fn(input_ids=ids, attention_mask=mask)
            torch.cuda.synchronize()
            times = []
            for _ in range(iters):
                t0 = time.perf_counter()
                fn(input_ids=ids, attention_mask=mask)
                torch.cuda.synchronize()
                times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        return times[len(times) // 2]

    eager = {(b, l): timed(model, b, l) for b, l in shapes}
    compiled = {}
    note = f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}"
    if compile_too:
        try:
            cmodel = torch.compile(model)
            compiled = {(b, l): timed(cmodel, b, l) for b, l in shapes}
        except Exception as e:  # compile needs a working toolchain; report, do not fail
            note += f"; torch.compile skipped: {type(e).__name__}: {e}"[:300]
    return eager, compiled, note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bertrt", default="target/release/bertrt")
    ap.add_argument("--shapes", default="1x128,32x128,8x512")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    shapes = parse_shapes(args.shapes)

    ours = run_bertrt(args.bertrt, shapes, args.iters)
    eager, compiled, note = run_torch(shapes, args.iters, not args.no_compile)

    print()
    print(f"machine: {platform.node()}; {note}")
    print("BERT-base shape, fp16, median ms per forward (batch x length):")
    print(f"{'shape':>8} {'bertrt':>9} {'torch':>9} {'compile':>9} {'target':>8}  bertrt/torch  met")
    fmt = lambda v: f"{v:9.3f}" if v is not None else f"{'-':>9}"
    for b, l in shapes:
        mine, te, tc = ours.get((b, l)), eager.get((b, l)), compiled.get((b, l))
        target = TARGETS_MS.get((b, l))
        ratio = f"{mine / te:12.2f}x" if mine and te else f"{'-':>13}"
        met = "-" if target is None or mine is None else ("yes" if mine <= target else "no")
        tgt = f"{target:8.2f}" if target else f"{'-':>8}"
        print(f"{f'{b}x{l}':>8} {fmt(mine)} {fmt(te)} {fmt(tc)} {tgt} {ratio}  {met}")
    if args.json:
        args.json.write_text(json.dumps({
            "note": note,
            "rows": [{"batch": b, "len": l, "bertrt_ms": ours.get((b, l)), "torch_ms": eager.get((b, l)),
                      "compile_ms": compiled.get((b, l))} for b, l in shapes],
        }, indent=1))


if __name__ == "__main__":
    sys.exit(main())
