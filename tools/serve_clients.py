#!/usr/bin/env python3
"""Real clients against `bertrt serve`: the `openai` package's embeddings.create and
huggingface_hub's InferenceClient (feature_extraction, sentence_similarity,
text_classification), their answers compared with `bertrt run` on the same inputs.

    python3 tools/serve_clients.py BERTRT_BINARY CLASSIFIER_DIR

Starts servers on 127.0.0.1 (port 0): the default model (all-MiniLM-L6-v2) as `minilm`, and
the classifier checkpoint as the second model `cls` of another; exits non-zero on the first
difference.
Tolerances: embeddings within 1e-6 (the float32 values the server sends), scores within
1e-6 (TEI writes scores as float32).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import openai
from huggingface_hub import InferenceClient

TOL = 1e-6


def run(binary: str, args: list[str], lines: list[dict]) -> list:
    stdin = "".join(json.dumps(line) + "\n" for line in lines)
    out = subprocess.run([binary, "run", *args], input=stdin, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def close(got, want, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise SystemExit(f"{what}: shape {got.shape}, want {want.shape}")
    d = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not d <= TOL:
        raise SystemExit(f"{what}: max |d| = {d}")
    print(f"ok  {what} (max |d| = {d:.2e})")


def start(binary: str, args: list[str]) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([binary, "serve", "--port", "0", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline().strip()
    if not line.startswith("listening on "):
        server.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return server, line.removeprefix("listening on ")


def main() -> None:
    binary, cls_dir = sys.argv[1], sys.argv[2]
    servers = []
    try:
        # The default model alone, named for the OpenAI `model` field; the classifier as a
        # second model of another server, reached under /models/cls.
        embed, base = start(binary, ["--served-model-name", "minilm"])
        servers.append(embed)
        other, base_cls = start(binary, ["--model", f"first={cls_dir}", "--model", f"cls={cls_dir}"])
        servers.append(other)
        check(binary, base, base_cls, cls_dir)
    finally:
        for s in servers:
            s.terminate()
            s.wait(timeout=30)


def check(binary: str, base: str, base_cls: str, cls_dir: str) -> None:
    texts = ["The quick brown fox jumps over the lazy dog.", "Search engines rank documents.", "bertrt"]
    lines = [{"text": t} for t in texts]
    want = [a["embedding"] for a in run(binary, ["--task", "embed", "--normalize", "true"], lines)]

    # openai: embeddings.create (the client asks for base64 and decodes it).
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
    got = client.embeddings.create(model="minilm", input=texts)
    close([d.embedding for d in got.data], want, "openai embeddings.create (batch)")
    assert [d.index for d in got.data] == [0, 1, 2], got.data
    assert got.usage.prompt_tokens > 0, got.usage
    got = client.embeddings.create(model="minilm", input=texts[0], encoding_format="float")
    alone = run(binary, ["--task", "embed", "--normalize", "true"], lines[:1])[0]["embedding"]
    close([got.data[0].embedding], [alone], "openai embeddings.create (one, float)")

    # huggingface_hub: feature_extraction and sentence_similarity on the embedding model.
    hub = InferenceClient(model=base)
    close(hub.feature_extraction(texts[0]), [alone], "InferenceClient.feature_extraction")
    sims = hub.sentence_similarity(texts[0], other_sentences=texts[1:])
    rest = run(binary, ["--task", "embed", "--normalize", "true"], lines)
    a = np.asarray(rest[0]["embedding"])
    want_sims = [float(a @ np.asarray(r["embedding"])) for r in rest[1:]]
    close(sims, want_sims, "InferenceClient.sentence_similarity")

    # text_classification on the classifier (softmax over every label, best first).
    hub_cls = InferenceClient(model=f"{base_cls}/models/cls")
    got = hub_cls.text_classification("i love this movie.")
    want_cls = run(binary, ["--task", "text-classification", "--model", cls_dir, "--top-k", "all",
                            "--function-to-apply", "softmax"], [{"text": "i love this movie."}])[0]
    if [g.label for g in got] != [w["label"] for w in want_cls][: len(got)]:
        raise SystemExit(f"text_classification labels: {got} vs {want_cls}")
    close([g.score for g in got], [w["score"] for w in want_cls][: len(got)], "InferenceClient.text_classification")
    if any(math.isnan(g.score) for g in got):
        raise SystemExit("NaN score")


if __name__ == "__main__":
    main()
