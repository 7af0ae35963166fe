"""Embeds a corpus across a Ray cluster with bertrt.

    python examples/ray_embed.py corpus.parquet embedded/ --column text --concurrency 2

Reads a Parquet file or folder (or JSON lines: names ending in .jsonl), embeds
the `--column` of every row with `bertrt.SentenceTransformer` in `--concurrency` Ray
actors (one model load each, `--threads` engine threads each), and writes Parquet to the
output folder: every input column kept, plus `embedding` (float32 vectors). Ray needs
one CPU beyond the actors' (concurrency x threads) for reading and writing.

On one machine it starts a local Ray; on a cluster, run `ray start --head` on one node and
`ray start --address=<head>:6379` on the others, then this script with `--address auto`.
Nothing else changes: Ray Data spreads the actors and the blocks over the nodes.
"""

from __future__ import annotations

import argparse
import os
from typing import Optional

import ray


class Embedder:
    """One actor's model: a batch of rows in, the same rows with their embeddings out."""

    def __init__(self, model: Optional[str], dtype: Optional[str], column: str, threads: int,
                 batch_size: int):
        # The engine's thread pool starts at the first call: size it to the actor's CPUs
        # (overriding what the worker inherited from the driver's environment).
        os.environ["RAYON_NUM_THREADS"] = str(threads)
        import bertrt

        self.model = bertrt.SentenceTransformer(model, dtype=dtype)
        self.column = column
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        texts = [str(t) for t in batch[self.column]]
        vectors = self.model.encode(texts, batch_size=self.batch_size)
        batch["embedding"] = list(vectors)
        return batch


def read(path: str) -> ray.data.Dataset:
    """A Parquet or JSON-lines file, or a folder of them (one block a file at least)."""
    names = [path] if not os.path.isdir(path) else os.listdir(path)
    if any(n.endswith(".jsonl") for n in names):
        return ray.data.read_json(path, lines=True)
    if any(n.endswith(".json") for n in names):
        return ray.data.read_json(path)
    return ray.data.read_parquet(path)


def embed_corpus(source: str, output: str, column: str = "text", model: Optional[str] = None,
                 dtype: Optional[str] = None, concurrency: int = 1, threads: int = 1,
                 batch_size: int = 64) -> None:
    """Embeds `source` into Parquet at `output` on the Ray cluster already joined
    (`ray.init`): `concurrency` actors of `threads` CPUs, `batch_size` rows a call. The
    cluster needs a CPU beyond the actors' for the reading and writing tasks."""
    ds = read(source).map_batches(
        Embedder,
        fn_constructor_args=(model, dtype, column, threads, batch_size),
        concurrency=concurrency,
        num_cpus=threads,
        batch_size=batch_size,
        batch_format="numpy",
    )
    ds.write_parquet(output)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="Parquet file or folder, or .jsonl")
    ap.add_argument("output", help="folder for the Parquet output")
    ap.add_argument("--column", default="text", help="the column to embed (default text)")
    ap.add_argument("--model", default=None, help="folder, packed file or Hub id (default all-MiniLM-L6-v2)")
    ap.add_argument("--dtype", default=None, help="f32 (default), bf16 or int8")
    ap.add_argument("--concurrency", type=int, default=1, help="actors (default 1)")
    ap.add_argument("--threads", type=int, default=1, help="engine threads per actor (default 1)")
    ap.add_argument("--batch-size", type=int, default=64, help="rows per call (default 64)")
    ap.add_argument("--address", default=None, help="a running cluster ('auto'); default: a local Ray")
    args = ap.parse_args()
    ray.init(address=args.address)
    embed_corpus(args.source, args.output, args.column, args.model, args.dtype, args.concurrency,
                 args.threads, args.batch_size)
    rows = ray.data.read_parquet(args.output).count()
    print(f"embedded {rows} rows into {args.output}")


if __name__ == "__main__":
    main()
