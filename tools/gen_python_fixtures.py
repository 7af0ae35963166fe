#!/usr/bin/env python3
"""References for the Python bindings' CrossEncoder (bindings/python/tests/fixtures/):
sentence-transformers' CrossEncoder.predict and .rank on the pipeline fixtures'
classifiers, in float32 as sentence-transformers runs them.

    python3 tools/gen_python_fixtures.py        (environment: tools/requirements-fixtures.txt)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sentence_transformers import CrossEncoder

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ROOT / "tests/fixtures/pipelines"
OUT = ROOT / "bindings/python/tests/fixtures/cross_encoder.json"

# No pair with an empty second text: sentence-transformers tokenizes pairs as a batch, where
# ("a", "") becomes [CLS] a [SEP] [SEP]; bertrt follows transformers' single-input rule (an
# empty pair is no pair), a documented difference.
PAIRS = [["i love this movie.", "it was great."], ["a pair", "of texts"], ["paris is big.", "it is."],
         ["what is the capital of france?", "paris is the capital of france."]]
QUERY = "what is the capital of france?"
DOCS = ["paris is the capital of france.", "i love this movie.", "berlin is big.", "the cat"]


def main() -> None:
    cases = []
    for name in ["text_cls_single", "text_cls_regression"]:
        model = CrossEncoder(str(PIPELINES / name), device="cpu")
        case = {"model": name, "num_labels": model.config.num_labels, "pairs": PAIRS,
                "predict": np.asarray(model.predict(PAIRS), dtype=np.float64).tolist(),
                "predict_softmax": np.asarray(model.predict(PAIRS, apply_softmax=True), dtype=np.float64).tolist()}
        if model.config.num_labels == 1:
            case["query"], case["documents"] = QUERY, DOCS
            case["rank"] = [{k: (float(v) if k == "score" else v) for k, v in r.items()}
                            for r in model.rank(QUERY, DOCS, return_documents=True)]
        cases.append(case)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cases": cases}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
