"""The Python API against the committed references: sentence-transformers' embeddings of
all-MiniLM-L6-v2 and the transformers pipelines' answers on the pipeline fixtures
(tests/fixtures/pipelines, made by tools/gen_pipeline_fixtures.py), so no torch is needed.
Tolerances: embeddings at cosine >= 0.9999 (float32 references) or within 1e-4 (float64),
scores within 1e-4, labels, words, tokens and offsets exactly."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

import bertrt

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "pipelines"
TOL = 1e-4


def cases(name: str, file: str = "cases.json") -> tuple[str, list]:
    doc = json.loads((FIXTURES / name / file).read_text())
    return doc["task"], doc["cases"]


def same(got, want, path: str, out: list) -> None:
    if isinstance(want, bool) or want is None or isinstance(want, str):
        if got != want:
            out.append(f"{path}: got {got!r}, want {want!r}")
    elif isinstance(want, (int, float)):
        exact = isinstance(want, int)
        if not isinstance(got, (int, float)) or (exact and got != want) or (not exact and abs(got - want) > TOL):
            out.append(f"{path}: got {got!r}, want {want!r}")
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            out.append(f"{path}: got {got!r}, want {want!r}")
            return
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{path}[{i}]", out)
    elif isinstance(want, dict):
        for k, w in want.items():
            if not isinstance(got, dict) or k not in got:
                out.append(f"{path}: missing {k}")
            else:
                same(got[k], w, f"{path}.{k}", out)


@pytest.fixture(scope="module")
def minilm():
    return bertrt.SentenceTransformer()


def test_encode_matches_sentence_transformers(minilm):
    task, all_cases = cases("embed_minilm")
    plain = [c for c in all_cases if not c["options"]]
    assert plain
    for c in plain:
        got = minilm.encode(c["input"]["text"]) if "text_pair" not in c["input"] else None
        if got is None:
            continue
        want = np.asarray(c["expected"], dtype=np.float64)
        if c.get("dtype") == "float64":
            assert np.max(np.abs(got - want)) <= TOL, c["input"]
        else:
            cos = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
            assert cos >= 0.9999, (c["input"], cos)


def test_encode_shapes_and_dtypes(minilm):
    one = minilm.encode("a sentence")
    assert one.shape == (384,) and one.dtype == np.float32
    many = minilm.encode(["a sentence", "another one", ""])
    assert many.shape == (3, 384) and many.dtype == np.float32
    np.testing.assert_allclose(many[0], one, atol=1e-6)
    assert minilm.get_sentence_embedding_dimension() == 384
    cut = minilm.encode(["a sentence"], truncate_dim=8, normalize_embeddings=True)
    assert cut.shape == (1, 8)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-6)
    tokens = minilm.encode(["a sentence", "a longer sentence here"], output_value="token_embeddings")
    assert [t.shape[1] for t in tokens] == [384, 384] and tokens[0].shape[0] < tokens[1].shape[0]
    sims = minilm.similarity(many, many)
    assert sims.shape == (3, 3)
    np.testing.assert_allclose(np.diag(sims), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["fill_mask", "text_cls_single", "text_cls_multi", "token_cls", "qa", "nsp",
                                  "multiple_choice", "generate"])
def test_every_pipeline_task_matches_transformers(name):
    task, all_cases = cases(name)
    failures = []
    loaded = {}
    for i, c in enumerate(all_cases):
        key = json.dumps(c["options"], sort_keys=True)
        if key not in loaded:
            loaded[key] = bertrt.pipeline(task, str(FIXTURES / name), **c["options"])
        p = loaded[key]
        inp = dict(c["input"])
        if "prompt" in inp and task == "generate":
            inp["text"] = inp.pop("prompt")
        got = p(question=inp["question"], context=inp["context"]) if task == "question-answering" else p(inp)
        want = c["expected"]
        if task == "text-classification" and isinstance(want, dict):
            want = [want]
        same(got, want, f"{name}[{i}]", failures)
    assert not failures, "\n".join(failures[:20])


def test_single_and_list_inputs():
    p = bertrt.pipeline("fill-mask", str(FIXTURES / "fill_mask"), top_k=2)
    one = p("paris is the [MASK] of france.")
    both = p(["paris is the [MASK] of france.", "the [MASK] is very big."])
    assert isinstance(one, list) and len(one) == 2 and isinstance(one[0], dict)
    assert isinstance(both, list) and len(both) == 2 and both[0] == one


def test_errors_are_the_expected_exceptions():
    with pytest.raises(FileNotFoundError):
        bertrt.SentenceTransformer("/nonexistent/model/folder")
    with pytest.raises(ValueError):
        bertrt.pipeline("fill-mask", str(FIXTURES / "fill_mask"), no_such_option=1)("a [MASK]")
    with pytest.raises(ValueError, match="no mask token"):
        bertrt.pipeline("fill-mask", str(FIXTURES / "fill_mask"))("no mask here")
    with pytest.raises(ValueError):
        bertrt.pipeline("translation", str(FIXTURES / "fill_mask"))
    with pytest.raises(ValueError):
        bertrt.pipeline("ner", str(FIXTURES / "fill_mask"))("x")  # no token-classification head


def test_two_threads_on_one_model_answer_as_one(minilm):
    texts = [f"sentence number {i} about threads" for i in range(40)]
    alone = minilm.encode(texts)
    results = [None, None]

    def work(k):
        results[k] = minilm.encode(texts)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_allclose(r, alone, atol=1e-6)


def test_model_forward_matches_transformers():
    """Next-sentence logits from token ids, against the fixture's transformers logits."""
    _, nsp = cases("nsp")
    m = bertrt.Model(str(FIXTURES / "nsp"))
    for c in nsp:
        ids = np.array([c["input_ids"]])
        sep = c["input_ids"].index(3)  # the first [SEP] closes the first text
        types = np.array([[0] * (sep + 1) + [1] * (len(c["input_ids"]) - sep - 1)])
        out = m.forward(ids, token_type_ids=types)
        assert out["logits"].dtype == np.float32 and out["logits"].shape == (1, 2)
        np.testing.assert_allclose(out["logits"][0], c["expected"]["logits"], atol=TOL)
    mlm = bertrt.Model(str(FIXTURES / "fill_mask"))
    ids = np.array([[2, 80, 4, 61, 3], [2, 70, 71, 3, 0]])
    out = mlm.forward(ids, attention_mask=(ids > 0).astype(np.int64), output_hidden_states=True)
    assert out["logits"].shape == (2, 5, mlm.config["vocab_size"])
    assert len(out["hidden_states"]) == mlm.config["num_hidden_layers"] + 1
    with pytest.raises(ValueError):
        mlm.forward(np.array([[2, 10_000, 3]]))  # an id past the vocabulary


def engine_owned(a: np.ndarray) -> bool:
    """Whether the array's memory is the engine's buffer (no copy into numpy's own)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.base is not None and not a.flags.owndata


def test_results_are_the_engines_buffers_without_a_copy(minilm):
    assert engine_owned(minilm.encode(["a", "b"]))
    assert all(engine_owned(t) for t in minilm.encode(["a", "b c"], output_value="token_embeddings"))
    out = bertrt.Model(str(FIXTURES / "fill_mask")).forward(np.array([[2, 80, 4, 3]]), output_hidden_states=True)
    assert engine_owned(out["logits"]) and all(engine_owned(h) for h in out["hidden_states"])


def test_cross_encoder_matches_sentence_transformers():
    doc = json.loads((Path(__file__).parent / "fixtures" / "cross_encoder.json").read_text())
    for c in doc["cases"]:
        ce = bertrt.CrossEncoder(str(FIXTURES / c["model"]))
        assert ce.num_labels == c["num_labels"]
        got = ce.predict(c["pairs"])
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, c["predict"], atol=TOL)
        np.testing.assert_allclose(ce.predict(c["pairs"], apply_softmax=True), c["predict_softmax"], atol=TOL)
        one = ce.predict(c["pairs"][0])
        np.testing.assert_allclose(one, c["predict"][0], atol=TOL)
        if "rank" in c:
            ranked = ce.rank(c["query"], c["documents"], return_documents=True)
            assert [r["corpus_id"] for r in ranked] == [r["corpus_id"] for r in c["rank"]]
            assert [r["text"] for r in ranked] == [r["text"] for r in c["rank"]]
            np.testing.assert_allclose([r["score"] for r in ranked], [r["score"] for r in c["rank"]], atol=TOL)
            assert len(ce.rank(c["query"], c["documents"], top_k=2)) == 2
        else:
            with pytest.raises(ValueError):
                ce.rank("q", ["a", "b"])
