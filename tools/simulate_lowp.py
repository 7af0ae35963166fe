#!/usr/bin/env python3
"""Simulates bertrt's low-precision schemes on all-MiniLM-L6-v2 in float64 PyTorch.

Each encoder linear is replaced by an emulation of a quantization scheme, attention's two
products optionally by bf16 ones, and the lowest mean-pooled sentence-embedding cosine to
plain float64 transformers is printed for the golden fixture sentences
(tests/fixtures/minilm, as tests/lowp.rs measures) and for tools/compare_cpu.py's 2 x 128
accuracy input. It ranks schemes before any kernel is written: its numbers for the shipped
schemes land within a few 1e-5 of the engine's (docs/cpu-low-precision.md).

Schemes per linear kind (qkv: Q/K/V, ao: attention output, up: FFN input, down: FFN
output), written KIND=SPEC: `f64`; `bf16` (both operands rounded to bf16); or
`int8[:OUTLIERS][:gN][:hN]` - weights symmetric int8 per output column (gN: per group of N
input channels), activations per row asymmetric u8 with a zero point, each row's OUTLIERS
largest |x| left out of the quantization and added exactly with bf16 weights (default 8),
hN: a block Hadamard rotation of N channels with random signs on both operands first.

Usage: tools/simulate_lowp.py [--attention f32|bf16] [--model DIR] VARIANT...
where VARIANT is NAME=KIND=SPEC,KIND=SPEC,... (kinds not named keep `int8`); for example
  tools/simulate_lowp.py shipped=down=bf16 all-int8=down=int8 groups=qkv=int8:8:g128,down=bf16
Needs tools/requirements-compare.txt.
"""

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import BertModel

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("qkv", "ao", "up", "down")


def bf16(x):
    return x.float().bfloat16().double()


def quantize_weight(w, group):
    """Symmetric int8 per output row of w [out, in] (per `group` inputs if set)."""
    shaped = w.reshape(w.shape[0], -1, group) if group else w[:, None, :]
    step = shaped.abs().amax(-1, keepdim=True) / 127
    step = torch.where(step == 0, torch.ones_like(step), step)
    return (torch.round(shaped / step).clamp(-127, 127) * step).reshape(w.shape)


def quantize_rows(x):
    """Per row asymmetric u8: [min(x, 0), max(x, 0)] in 255 steps, 0 exact."""
    lo = torch.clamp(x.amin(-1, keepdim=True), max=0)
    hi = torch.clamp(x.amax(-1, keepdim=True), min=0)
    step = (hi - lo) / 255
    step = torch.where(step == 0, torch.ones_like(step), step)
    zero = torch.round(-lo / step)
    return torch.round(x / step).clamp(-zero, 255 - zero) * step


def rotation(k, block, seed):
    hadamard = torch.ones(1, 1, dtype=torch.float64)
    while hadamard.shape[0] < block:
        hadamard = torch.cat([torch.cat([hadamard, hadamard], 1), torch.cat([hadamard, -hadamard], 1)])
    signs = torch.randint(0, 2, (k,), generator=torch.Generator().manual_seed(seed)) * 2 - 1
    blocks = torch.block_diag(*[hadamard] * (k // block)) / math.sqrt(block)
    return signs.double()[:, None] * blocks


def emulation(linear, spec):
    w, b = linear.weight, linear.bias
    if spec == "f64":
        return lambda x: torch.nn.functional.linear(x, w, b)
    if spec == "bf16":
        wb = bf16(w)
        return lambda x: bf16(x) @ wb.T + b
    parts = spec.split(":")
    if parts[0] != "int8":
        raise SystemExit(f"unknown scheme {spec!r}")
    outliers, group, rotate = 8, 0, 0
    for p in parts[1:]:
        if p.startswith("g"):
            group = int(p[1:])
        elif p.startswith("h"):
            rotate = int(p[1:])
        else:
            outliers = int(p)
    r = rotation(w.shape[1], rotate, w.shape[1]) if rotate else None
    w = w @ r if rotate else w
    wq, wb = quantize_weight(w, group), bf16(w)

    def run(x):
        x = x @ r if rotate else x
        if not outliers:
            return quantize_rows(x) @ wq.T + b
        picked = torch.zeros_like(x, dtype=torch.bool)
        picked.scatter_(-1, x.abs().topk(outliers, dim=-1).indices, True)
        rest = quantize_rows(torch.where(picked, 0.0, x)) @ wq.T
        return rest + torch.where(picked, x, 0.0) @ wb.T + b

    return run


def kind(name):
    if name.endswith("attention.output.dense"):
        return "ao"
    if name.endswith("intermediate.dense"):
        return "up"
    if name.endswith("output.dense"):
        return "down"
    return "qkv"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path.home() / ".cache/bertrt/models/all-MiniLM-L6-v2")
    parser.add_argument("--attention", choices=("f32", "bf16"), default="f32",
                        help="attention's products: exact, or both operands rounded to bf16")
    parser.add_argument("variants", nargs="+", metavar="NAME=KIND=SPEC,...")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = BertModel.from_pretrained(args.model, dtype=torch.float64, attn_implementation="eager").eval()

    exact_matmul = torch.matmul

    def matmul(a, b):
        # Only attention multiplies 4-d tensors here (the linears go through F.linear).
        if args.attention == "bf16" and a.dim() == 4:
            return exact_matmul(bf16(a), bf16(b))
        return exact_matmul(a, b)

    fixtures = load_file(ROOT / "tests/fixtures/minilm/reference.safetensors")
    cases = sorted({k.split(".")[0] for k in fixtures})
    feeds = [tuple(torch.from_numpy(fixtures[f"{c}.{t}"]) for t in ("input_ids", "attention_mask", "token_type_ids"))
             for c in cases]
    rows, cols = np.arange(2)[:, None], np.arange(128)[None, :]
    ids = torch.from_numpy((1000 + (rows * 7919 + cols * 104_729) % 20_000) % model.config.vocab_size)
    feeds.append((ids, torch.ones_like(ids), torch.zeros_like(ids)))

    def embeddings():
        out = []
        for ids, mask, types in feeds:
            hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            m = mask[..., None].double()
            out.append((hidden * m).sum(1) / m.sum(1))
        return out

    reference = embeddings()
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "encoder" in n}
    plain = {n: m.forward for n, m in linears.items()}
    torch.matmul = matmul
    print(f"attention products: {args.attention}")
    for variant in args.variants:
        name, _, specs = variant.partition("=")
        chosen = dict.fromkeys(KINDS, "int8")
        for item in filter(None, specs.split(",")):
            k, _, spec = item.partition("=")
            if k not in KINDS:
                raise SystemExit(f"{variant!r}: unknown kind {k!r} (expected {', '.join(KINDS)})")
            chosen[k] = spec
        for n, m in linears.items():
            m.forward = emulation(m, chosen[kind(n)])
        cos = [torch.nn.functional.cosine_similarity(a, b).min().item() for a, b in zip(embeddings(), reference)]
        for n, m in linears.items():
            m.forward = plain[n]
        print(f"{name:24s} fixtures {min(cos[:-1]):.6f}  compare input {cos[-1]:.6f}   "
              + " ".join(f"{k}={v}" for k, v in chosen.items()))
    torch.matmul = exact_matmul


if __name__ == "__main__":
    main()
