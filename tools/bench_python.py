#!/usr/bin/env python3
"""bertrt's Python API against sentence-transformers on the same sentences (a committed
compare script, not a timed test).

    python3 tools/bench_python.py [--sentences 2000] [--threads 2] [--rounds 3] [--no-ray]

Embeds the same SENTENCES sentences (5 to 60 words, fixed seed) with
`bertrt.SentenceTransformer.encode` (f32 and int8) and
`sentence_transformers.SentenceTransformer.encode` (f32, and int8 through torch's
dynamic quantization of the Linear layers), all-MiniLM-L6-v2, batch 32, THREADS threads
each (torch.set_num_threads; RAYON_NUM_THREADS for bertrt), in interleaved rounds; prints
the best round of each, its ratio to sentence-transformers f32 and the cosine of its
embeddings to sentence-transformers f32 (worst sentence). Then examples/ray_embed.py on
a local Ray over a Parquet of the same sentences: 1 actor of THREADS threads and THREADS
actors of 1 thread, wall time from the call to the written Parquet (actor start and model
load included), and the same for 32 sentences: the fixed cost of starting. Needs tools/requirements-fixtures.txt's environment, the bertrt wheel
(bindings/python) and ray[data].
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sentences(n: int) -> list[str]:
    import numpy as np
    words = ("the a model reads every word of this long text and answers quickly while "
             "engines compare numbers on shared machines across clusters today").split()
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, size=int(rng.integers(5, 61)))) for _ in range(n)]


def best_of(rounds: int, engines: dict, texts: list[str]) -> dict:
    """Interleaved rounds: engine name -> (best seconds, last embeddings)."""
    best = {name: (float("inf"), None) for name in engines}
    for _ in range(rounds):
        for name, encode in engines.items():
            start = time.perf_counter()
            out = encode(texts)
            took = time.perf_counter() - start
            best[name] = (min(best[name][0], took), out)
    return best


def worst_cosine(a, b) -> float:
    import numpy as np
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bench_ray(texts: list[str], threads: int) -> list[tuple[str, float]]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    spec = importlib.util.spec_from_file_location("ray_embed", ROOT / "examples" / "ray_embed.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "corpus"
        source.mkdir()
        parts = 4 * threads
        for p in range(parts):
            pq.write_table(pa.table({"text": texts[p::parts]}), source / f"{p}.parquet")
        # One CPU more than the actors take, for reading and writing.
        ray.init(num_cpus=threads + 1, include_dashboard=False, log_to_driver=False)
        small = Path(tmp) / "small"
        small.mkdir()
        pq.write_table(pa.table({"text": texts[:32]}), small / "0.parquet")
        try:
            for actors, each in [(1, threads), (threads, 1)]:
                for name, corpus in [("32 sentences (start-up)", small), (f"{len(texts)} sentences", source)]:
                    start = time.perf_counter()
                    example.embed_corpus(str(corpus), f"{tmp}/out-{actors}-{corpus.name}", concurrency=actors,
                                         threads=each, batch_size=32)
                    label = f"Ray, {actors} actor(s) x {each} thread(s), {name}"
                    out.append((label, time.perf_counter() - start))
        finally:
            ray.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)

    import torch
    import bertrt
    import sentence_transformers

    torch.set_num_threads(args.threads)
    texts = sentences(args.sentences)
    ours = bertrt.SentenceTransformer()
    ours_int8 = bertrt.SentenceTransformer(dtype="int8")
    model_dir = bertrt_model_dir()
    theirs = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    theirs_int8 = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    module = theirs_int8[0]
    quantized = torch.quantization.quantize_dynamic(module.auto_model, {torch.nn.Linear}, dtype=torch.qint8)
    # sentence-transformers 5 keeps the transformers model as `model` (auto_model reads it).
    setattr(module, "model" if hasattr(module, "model") else "auto_model", quantized)
    engines = {
        "sentence-transformers f32": lambda t: theirs.encode(t, batch_size=32),
        "sentence-transformers int8 (torch dynamic)": lambda t: theirs_int8.encode(t, batch_size=32),
        "bertrt f32": lambda t: ours.encode(t, batch_size=32),
        "bertrt int8": lambda t: ours_int8.encode(t, batch_size=32),
    }
    best = best_of(args.rounds, engines, texts)
    base_time, base = best["sentence-transformers f32"]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, {args.threads} threads, {args.sentences} sentences, "
          f"batch 32, best of {args.rounds}, commit {commit}")
    print(f"{'engine':45} {'seconds':>8} {'vs ST f32':>10} {'cosine to ST f32':>17}")
    for name, (took, out) in best.items():
        print(f"{name:45} {took:8.3f} {base_time / took:9.2f}x {worst_cosine(out, base):17.6f}")
    if not args.no_ray:
        for name, took in bench_ray(texts, args.threads):
            print(f"{name:60} {took:8.3f}")


def bertrt_model_dir() -> Path:
    """The default model's folder in bertrt's cache (fetched by bertrt on first use)."""
    cache = os.environ.get("BERTRT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bertrt")
    return Path(cache) / "models" / "all-MiniLM-L6-v2"


if __name__ == "__main__":
    main()
