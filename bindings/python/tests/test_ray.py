"""examples/ray_embed.py on a local Ray cluster (two one-CPU actors and a CPU for reading
and writing): every row of a corpus embedded
once, with the embedding the single-process SentenceTransformer gives (within 1e-5: the
rows are padded in other batches), for Parquet and JSON-lines inputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
import pyarrow as pa  # noqa: E402

import bertrt  # noqa: E402

pytestmark = pytest.mark.ray

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "ray_embed.py"
WORDS = "the a cat dog sat ran on under mat tree quickly slowly red blue engine answers".split()


def load_example():
    spec = importlib.util.spec_from_file_location("ray_embed", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def corpus(n: int) -> list[str]:
    rng = np.random.default_rng(7)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(n)]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def read_output(folder: Path) -> dict:
    table = pq.read_table(folder)
    ids = table.column("id").to_pylist()
    vectors = [np.asarray(v, dtype=np.float32) for v in table.column("embedding").to_pylist()]
    assert len(ids) == len(set(ids)), "a row was embedded more than once"
    return dict(zip(ids, vectors))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_every_row_embedded_once_as_one_process(cluster, tmp_path, fmt):
    texts = corpus(300)
    # Four files: four blocks at least, for the two actors to share.
    source = tmp_path / "corpus"
    source.mkdir()
    for part in range(4):
        ids = list(range(part, len(texts), 4))
        if fmt == "parquet":
            pq.write_table(pa.table({"id": ids, "text": [texts[i] for i in ids]}), source / f"{part}.parquet")
        else:
            lines = "".join(json.dumps({"id": i, "text": texts[i]}) + "\n" for i in ids)
            (source / f"{part}.jsonl").write_text(lines)
    out = tmp_path / "embedded"
    load_example().embed_corpus(str(source), str(out), concurrency=2, threads=1, batch_size=32)

    got = read_output(out)
    assert sorted(got) == list(range(len(texts)))
    want = bertrt.SentenceTransformer().encode(texts)
    worst = max(float(np.abs(got[i] - want[i]).max()) for i in range(len(texts)))
    assert worst <= 1e-5, f"largest difference to one process: {worst}"
