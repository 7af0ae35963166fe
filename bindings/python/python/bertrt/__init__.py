"""bertrt: BERT inference on the bertrt engine, with sentence-transformers' and
transformers' APIs (no torch).

    from bertrt import SentenceTransformer, pipeline
    model = SentenceTransformer()            # all-MiniLM-L6-v2, fetched on first use
    vectors = model.encode(["a sentence", "another"])   # float32 [2, 384]
    ner = pipeline("ner", "path/to/checkpoint")
    ner("John lives in Paris.")

Errors: ValueError for bad input or options, FileNotFoundError for a missing model,
RuntimeError for the rest, each with the engine's message. The engine releases the GIL
while it works, so threads sharing one model run in parallel.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional, Union

import numpy as np

from ._bertrt import Engine as _Engine
from ._bertrt import RawModel as _RawModel
from ._bertrt import __version__

__all__ = ["SentenceTransformer", "CrossEncoder", "Model", "pipeline", "Pipeline", "__version__"]


class SentenceTransformer:
    """sentence-transformers' `SentenceTransformer` on the bertrt engine.

    `model`: a checkpoint folder, a packed file or a Hub id (None: all-MiniLM-L6-v2).
    Pooling and normalisation come from the model's sentence-transformers files.
    """

    def __init__(self, model: Optional[str] = None, device: str = "cpu", dtype: Optional[str] = None):
        self._engine = _Engine(model, device, dtype)
        config = json.loads(self._engine.config())
        self._dim = int(config["hidden_size"])

    def get_sentence_embedding_dimension(self) -> int:
        """The length of an embedding."""
        return self._dim

    def encode(
        self,
        sentences: Union[str, list[str]],
        batch_size: int = 32,
        show_progress_bar: Optional[bool] = None,
        output_value: str = "sentence_embedding",
        convert_to_numpy: bool = True,
        normalize_embeddings: bool = False,
        truncate_dim: Optional[int] = None,
        prompt: Optional[str] = None,
    ):
        """Embeds one sentence (a 1-D float32 array) or a list ([n, dim] float32).

        `output_value="token_embeddings"` gives each sentence's token states instead
        (a [tokens, dim] array each); `normalize_embeddings` L2-normalises;
        `truncate_dim` keeps the first values (before normalising, as
        sentence-transformers does after); `prompt` is put before every sentence.
        """
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if prompt:
            texts = [prompt + t for t in texts]
        if output_value == "token_embeddings":
            states = self._engine.embed(texts, batch_size, None, "none", None)
            arrays = [a.reshape(-1, self._dim) for a in states]
            return arrays[0] if single else arrays
        if output_value != "sentence_embedding":
            raise ValueError(f"output_value must be sentence_embedding or token_embeddings, got {output_value!r}")
        if not texts:
            return np.zeros((0, truncate_dim or self._dim), dtype=np.float32)
        normalize = True if normalize_embeddings else None
        # One flat array from the engine, viewed as [n, dim] (no copy).
        (flat,) = self._engine.embed(texts, batch_size, normalize, None, None)
        vectors = flat.reshape(len(texts), -1)
        if truncate_dim is not None:
            vectors = vectors[:, :truncate_dim]
            if normalize_embeddings:
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = vectors / np.maximum(norms, 1e-12)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not convert_to_numpy:
            vectors = list(vectors)
        return vectors[0] if single else vectors

    def similarity(self, a, b) -> np.ndarray:
        """Cosine similarity of every row of `a` with every row of `b`: [len(a), len(b)]."""
        a = np.atleast_2d(np.asarray(a, dtype=np.float32))
        b = np.atleast_2d(np.asarray(b, dtype=np.float32))
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return a @ b.T


class CrossEncoder:
    """sentence-transformers' `CrossEncoder` on the bertrt engine: a sequence-classification
    checkpoint scoring (text, text) pairs."""

    def __init__(self, model: str, device: str = "cpu", dtype: Optional[str] = None):
        self._engine = _Engine(model, device, dtype)
        config = json.loads(self._engine.config())
        id2label = config.get("id2label") or {}
        self.num_labels = int(config.get("num_labels") or len(id2label) or 2)
        labels = [id2label.get(str(i), f"LABEL_{i}") for i in range(self.num_labels)]
        if len(set(labels)) != len(labels):
            raise ValueError("the checkpoint's labels are not distinct")
        self._index = {label: i for i, label in enumerate(labels)}

    def _logits(self, pairs: list, batch_size: int) -> np.ndarray:
        inputs = [{"text": a, "text_pair": b} for a, b in pairs]
        options = {"function_to_apply": "none", "top_k": "all", "batch_size": batch_size}
        out = np.zeros((len(pairs), self.num_labels), dtype=np.float32)
        for row, answer in enumerate(_run(self._engine, "text-classification", options, inputs)):
            for item in answer:
                out[row, self._index[item["label"]]] = item["score"]
        return out

    def predict(self, sentences, batch_size: int = 32, show_progress_bar: Optional[bool] = None,
                activation_fn=None, apply_softmax: bool = False, convert_to_numpy: bool = True):
        """Scores each pair: [n] for a one-label model (sigmoid by default), else
        [n, num_labels] logits (softmax with `apply_softmax`); one pair gives one score."""
        single = len(sentences) == 2 and all(isinstance(x, str) for x in sentences)
        pairs = [tuple(sentences)] if single else [tuple(p) for p in sentences]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("CrossEncoder.predict takes (text, text) pairs")
        scores = self._logits(pairs, batch_size)
        if activation_fn is not None:
            scores = np.asarray(activation_fn(scores), dtype=np.float32)
        elif self.num_labels == 1:
            scores = (1.0 / (1.0 + np.exp(-scores.astype(np.float64)))).astype(np.float32)
        # As sentence-transformers: softmax over the labels, even a single one.
        if apply_softmax and scores.ndim == 2:
            z = scores.astype(np.float64)
            z = np.exp(z - z.max(axis=1, keepdims=True))
            scores = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
        if self.num_labels == 1:
            scores = scores[:, 0]
        if not convert_to_numpy:
            scores = list(scores)
        return scores[0] if single else scores

    def rank(self, query: str, documents: list, top_k: Optional[int] = None, return_documents: bool = False,
             batch_size: int = 32, show_progress_bar: Optional[bool] = None, activation_fn=None,
             apply_softmax: bool = False) -> list:
        """The documents by score against `query`, best first: `corpus_id`, `score` (and
        `text`); one-label models only, as in sentence-transformers."""
        if self.num_labels != 1:
            raise ValueError("CrossEncoder.rank needs a model with one label")
        scores = self.predict([(query, d) for d in documents], batch_size=batch_size,
                              activation_fn=activation_fn, apply_softmax=apply_softmax)
        order = sorted(range(len(documents)), key=lambda i: -float(scores[i]))[:top_k]
        out = []
        for i in order:
            item = {"corpus_id": i, "score": float(scores[i])}
            if return_documents:
                item["text"] = documents[i]
            out.append(item)
        return out


def _run(engine, task: str, options: dict, inputs: list) -> list:
    """Answers inputs with a task; the first failed input raises ValueError."""
    answers = engine.run(task, json.dumps(options), [json.dumps(i) for i in inputs])
    out = []
    for ok, text in answers:
        if not ok:
            raise ValueError(text)
        out.append(json.loads(text))
    return out


_TASKS = {
    "feature-extraction": "embed",
    "embeddings": "embed",
    "embed": "embed",
    "fill-mask": "fill-mask",
    "text-classification": "text-classification",
    "sentiment-analysis": "text-classification",
    "token-classification": "token-classification",
    "ner": "token-classification",
    "question-answering": "question-answering",
    "qa": "question-answering",
    "multiple-choice": "multiple-choice",
    "next-sentence": "next-sentence",
    "text-generation": "generate",
    "generate": "generate",
    "embed-sparse": "embed-sparse",
}


class Pipeline:
    """A task over a loaded checkpoint, called as transformers' pipelines are: a string,
    a list of strings, or the task's dicts (question answering also takes
    `question=`/`context=`); one result for one input, a list for a list."""

    def __init__(self, task: str, model: Optional[str] = None, device: str = "cpu",
                 dtype: Optional[str] = None, **options: Any):
        if task not in _TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(sorted(_TASKS))}")
        self.task = _TASKS[task]
        self._engine = _Engine(model, device, dtype)
        self._options = options

    def _input(self, x: Any) -> dict:
        if isinstance(x, dict):
            return x
        if isinstance(x, str):
            if self.task == "generate":
                return {"text": x}
            return {"text": x}
        raise ValueError(f"{self.task}: expected a string or a dict, got {type(x).__name__}")

    def __call__(self, inputs: Any = None, question: Optional[Any] = None,
                 context: Optional[Any] = None, **options: Any):
        if self.task == "question-answering" and question is not None:
            if isinstance(question, list):
                contexts = context if isinstance(context, list) else [context] * len(question)
                inputs = [{"question": q, "context": c} for q, c in zip(question, contexts)]
            else:
                inputs = {"question": question, "context": context}
        if inputs is None:
            raise ValueError("no input")
        single = not isinstance(inputs, list)
        items = [inputs] if single else list(inputs)
        out = _run(self._engine, self.task, {**self._options, **options}, [self._input(i) for i in items])
        return out[0] if single else out


def pipeline(task: str, model: Optional[str] = None, device: str = "cpu", dtype: Optional[str] = None,
             **options: Any) -> Pipeline:
    """transformers' `pipeline(task, model)` on the bertrt engine (see `Pipeline`)."""
    return Pipeline(task, model, device, dtype, **options)


class Model:
    """A head on token ids: `forward` takes numpy int arrays [batch, seq] and returns a
    dict of float32 arrays under transformers' names (`last_hidden_state`, `logits`,
    ...; `hidden_states` and `attentions` as lists when asked for)."""

    def __init__(self, path: Optional[str] = None, head: Optional[str] = None, device: str = "cpu",
                 dtype: Optional[str] = None):
        self._model = _RawModel(path, head, device, dtype)
        self.config = json.loads(self._model.config())

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, head: Optional[str] = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> dict:
        as_ids = lambda a: None if a is None else np.ascontiguousarray(np.atleast_2d(a), dtype=np.int64)
        raw = self._model.forward(as_ids(input_ids), as_ids(attention_mask), as_ids(token_type_ids),
                                  head, output_hidden_states, output_attentions)
        out = {}
        for name, value in raw.items():
            if isinstance(value, list):
                out[name] = [arr.reshape(shape) for shape, arr in value]
            else:
                shape, arr = value
                out[name] = arr.reshape(shape)
        return out

    __call__ = forward
