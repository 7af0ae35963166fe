#!/usr/bin/env python3
"""Compare bertrt with OpenVINO, ONNX Runtime, CTranslate2 and PyTorch on the CPU, in
every precision: speed, accuracy, peak memory, and the distance to the machine's limit.

Every engine runs the same BertModel weights on the same inputs, in one run:

* bertrt       `bertrt bench --json` (RAYON_NUM_THREADS = --threads); its own
               warm-up run, then the median of --iters timed forwards. Once per
               CPU dtype of --bertrt-dtypes (f32, bf16, int8: `--dtype`), each a
               column of its own (bertrt, bertrt-bf16, bertrt-int8).
* ORT          the model exported to ONNX (last_hidden_state, dynamic batch and
               sequence axes), session with ORT_ENABLE_ALL, intra-op threads =
               --threads, one inter-op thread, sequential execution.
* ORT-fused    the same export passed through onnxruntime.transformers'
               BERT optimizer first (Attention, SkipLayerNormalization,
               EmbedLayerNormalization fusions), then the same session options.
               Skip it with --no-ort-fused.
* PyTorch      transformers' BertModel, float32, eval, inference mode,
               torch.set_num_threads(--threads).
* torch.compile  only with --torch-compile (compiling takes about a minute per
               model and shape on a small machine).
* --peers (all by default; tools/compare_peers.py says how each is set up):
  OpenVINO and OpenVINO-bf16 (the export, static shapes, INFERENCE_PRECISION_HINT f32
  or bf16), OpenVINO-int8 (NNCF post-training quantization), ORT-int8 (quantize_dynamic,
  per-channel int8 weights), CT2 and CT2-int8 (CTranslate2, compute_type float32 / int8).

Tables are per precision (f32, bf16, int8): each engine's time, bertrt's against the
fastest peer of the same precision, and the floor: the forward's FLOPs (the linears and
the two attention products) over this machine's measured peak for that precision's widest
instruction (`cargo build --release --example cpu_peak`: f32 FMA, bf16 `vdpbf16ps` or AMX's
`tdpbf16ps`, int8 `vpdpbusd` or AMX's `tdpbusd`, the faster, all threads), with the share of
that peak bertrt reaches.

Peak RSS: after the timing, each engine runs alone in a fresh process (the probe of
tools/compare_peers.py) at the model's largest shape: set up, one forward, its high-water
mark; a bare Python with numpy is printed for scale. Skip with --no-rss.

Inputs are bertrt bench's deterministic ids (full attention masks, token type 0).
Python engines get --warmup untimed runs, then the median of --iters wall-clock
timings (sorted[n // 2], as bertrt bench computes it). Every engine is set up first,
then timed in --rounds rounds (3), each over every engine and shape in a rotating
order; the table shows the median of each engine's round medians (all of them are in
--json), so a slow spell of a shared machine cannot fall on one engine alone.

Accuracy: a float64 transformers reference (eager attention) on one input of
--accuracy-shape per model; each path's max |diff| of last_hidden_state
(bertrt through `bertrt run --task raw`) and the lowest cosine, over the batch,
between its mean-pooled embedding (the mean of last_hidden_state over the
attention mask, as sentence-transformers pools all-MiniLM-L6-v2) and the
reference's.

Models (--models, comma-separated):
  minilm     all-MiniLM-L6-v2 from the bertrt cache (fetched by bertrt on first use)
  bert-base  the seeded random-weight BERT-base checkpoint that
             `bertrt bench --model bert-base` writes into the bertrt cache
  DIR        any BERT checkpoint folder (config.json + model.safetensors)
The bertrt cache is $BERTRT_CACHE, else $XDG_CACHE_HOME/bertrt, else ~/.cache/bertrt.

Setup and use, from the repository root:

    cargo build --release --bin bertrt --example cpu_peak
    python -m venv .venv-compare
    .venv-compare/bin/pip install -r tools/requirements-compare.txt
    nice -n 19 .venv-compare/bin/python tools/compare_cpu.py --json run.json --markdown

Options: --threads N (2), --iters N (10), --rounds N (3), --warmup N (2), --bertrt PATH
(./target/release/bertrt), --bertrt-dtypes LIST (f32,bf16,int8), --peers LIST (all of
openvino,openvino-bf16,openvino-int8,ort-int8,ct2,ct2-int8, or none), --calibration N (32
NNCF calibration inputs), --models LIST (minilm,bert-base), --shapes LIST
(1x128,8x128,32x128,1x512: every model but bert-base), --bert-base-shapes LIST
(1x128,8x128), --accuracy-shape BxL (2x128), --peak PATH
(./target/release/examples/cpu_peak), --no-rss, --no-ort-fused, --torch-compile,
--json FILE (save every number), --markdown (also print the README's tables),
--render FILE (print a saved run's report and tables, and stop).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import compare_peers as peers

# Config keys passed to transformers.BertConfig; bertrt's synthetic config.json
# also carries nulls (model_type, id2label, ...) that are dropped.
CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "position_embedding_type",
    "pad_token_id",
)


# The peers beyond ORT and PyTorch: --peers name -> engine key.
PEERS = {
    "openvino": "openvino",
    "openvino-bf16": "openvino_bf16",
    "openvino-int8": "openvino_int8",
    "ort-int8": "ort_int8",
    "ct2": "ct2",
    "ct2-int8": "ct2_int8",
}
# Versions printed with the report.
PACKAGES = ("onnxruntime", "openvino", "nncf", "ctranslate2", "torch", "transformers", "numpy")


# ---------------------------------------------------------------------------
# Setup helpers


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for point in text.split(","):
        try:
            b, l = (int(x) for x in point.strip().lower().split("x"))
        except ValueError:
            raise SystemExit(f"--shapes: {point!r} is not BATCHxLEN") from None
        if b <= 0 or l <= 0:
            raise SystemExit(f"--shapes: {point!r} is not BATCHxLEN")
        shapes.append((b, l))
    return shapes


def bertrt_cache() -> Path:
    for var, sub in (("BERTRT_CACHE", None), ("XDG_CACHE_HOME", "bertrt")):
        value = os.environ.get(var)
        if value:
            return Path(value) / sub if sub else Path(value)
    return Path.home() / ".cache" / "bertrt"


def bertrt_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(threads)
    return env


def resolve_model(spec: str, bertrt: Path, threads: int) -> tuple[str, Path]:
    """(label, checkpoint folder); lets bertrt create/fetch the named models."""
    cache = bertrt_cache()
    if spec == "minilm":
        folder, bench_model = cache / "models" / "all-MiniLM-L6-v2", None
        label = "all-MiniLM-L6-v2"
    elif spec == "bert-base":
        folder, bench_model = cache / "synthetic" / "bert-base", "bert-base"
        label = "BERT-base shape (seeded random weights)"
    else:
        folder = Path(spec)
        if not (folder / "config.json").is_file():
            raise SystemExit(f"--models: {spec!r} is neither minilm, bert-base nor a checkpoint folder")
        return folder.name, folder
    ready = (folder / "config.json").is_file() and (
        spec != "minilm" or (folder / ".bertrt-verified").is_file()
    )
    if not ready:
        cmd = [str(bertrt), "bench", "--shapes", "1x8", "--iters", "1"]
        if bench_model:
            cmd += ["--model", bench_model]
        print(f"[setup] {' '.join(cmd)}  (creates {folder})", flush=True)
        subprocess.run(cmd, check=True, env=bertrt_env(threads), stdout=subprocess.DEVNULL)
    if not (folder / "config.json").is_file():
        raise SystemExit(f"bertrt did not create {folder}")
    return label, folder


def read_config(folder: Path) -> dict:
    raw = json.loads((folder / "config.json").read_text())
    return {k: raw[k] for k in CONFIG_KEYS if raw.get(k) is not None}


def load_state_dict(folder: Path) -> dict:
    import torch

    st = folder / "model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        tensors = load_file(str(st))
    elif (folder / "pytorch_model.bin").is_file():
        tensors = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise SystemExit(f"{folder}: no model.safetensors or pytorch_model.bin")
    out = {}
    for name, t in tensors.items():
        if name.startswith("bert."):
            name = name[len("bert.") :]
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[name] = t
    return out


def load_bert(folder: Path, dtype, attn: str):
    """BertModel with exactly the checkpoint's weights (refuses missing tensors)."""
    import torch
    import transformers

    config = transformers.BertConfig(**read_config(folder))
    config._attn_implementation = attn
    state = load_state_dict(folder)
    pooler = "pooler.dense.weight" in state
    model = transformers.BertModel(config, add_pooling_layer=pooler)
    missing, _unexpected = model.load_state_dict(state, strict=False)
    buffers = {name for name, _ in model.named_buffers()}
    missing = [m for m in missing if m not in buffers]
    if missing:
        raise SystemExit(f"{folder}: checkpoint lacks {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return model.to(dtype).eval(), config


def bench_ids(batch: int, length: int, vocab: int) -> np.ndarray:
    """The ids bertrt bench uses for a batch x length point."""
    r = np.arange(batch, dtype=np.int64)[:, None]
    i = np.arange(length, dtype=np.int64)[None, :]
    return (1000 + (r * 7919 + i * 104_729) % 20_000) % vocab


def inputs(batch: int, length: int, vocab: int) -> dict[str, np.ndarray]:
    ids = bench_ids(batch, length, vocab)
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }


def time_fn(fn, warmup: int, iters: int) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(iters, 1)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {
        "median_ms": times[len(times) // 2],
        "p90_ms": times[min(len(times) * 9 // 10, len(times) - 1)],
    }


# ---------------------------------------------------------------------------
# Engines


def bertrt_key(dtype: str) -> str:
    """The engine key of bertrt in `dtype` (plain "bertrt" for f32)."""
    return "bertrt" if dtype == "f32" else f"bertrt_{dtype}"


def run_bertrt_bench(bertrt: Path, folder: Path, shapes, iters: int, threads: int,
                     dtype: str = "f32") -> dict:
    cmd = [
        str(bertrt), "bench", "--model", str(folder),
        "--shapes", ",".join(f"{b}x{l}" for b, l in shapes),
        "--iters", str(iters), "--json", "--dtype", dtype,
    ]
    proc = subprocess.run(cmd, env=bertrt_env(threads), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bertrt bench failed ({proc.returncode}):\n{proc.stderr}")
    out = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            point = json.loads(line)
            out[(point["batch"], point["len"])] = {
                "median_ms": point["median_ms"],
                "p90_ms": point["p90_ms"],
            }
    return out


def run_bertrt_raw(bertrt: Path, folder: Path, feed: dict, threads: int,
                   dtype: str = "f32") -> np.ndarray:
    request = {
        "input_ids": feed["input_ids"].tolist(),
        "attention_mask": feed["attention_mask"].tolist(),
    }
    cmd = [str(bertrt), "run", "--model", str(folder), "--task", "raw", "--dtype", dtype]
    proc = subprocess.run(
        cmd, input=json.dumps(request) + "\n", env=bertrt_env(threads),
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bertrt run --task raw failed ({proc.returncode}): {proc.stderr.strip()}")
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    if "last_hidden_state" not in answer:
        raise RuntimeError(f"bertrt run --task raw: no last_hidden_state in {str(answer)[:200]}")
    return np.asarray(answer["last_hidden_state"], dtype=np.float64)


def export_onnx(model, path: Path) -> None:
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    dummy = inputs(2, 16, model.config.vocab_size)
    args = tuple(torch.from_numpy(dummy[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: no onnxscript needed, and a graph the
        # onnxruntime.transformers BERT optimizer knows how to fuse.
        torch.onnx.export(
            LastHidden(model), args, str(path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                          "last_hidden_state": axes},
            opset_version=17, do_constant_folding=True, dynamo=False,
        )


def fuse_onnx(src: Path, dst: Path, config) -> dict:
    from onnxruntime.transformers import optimizer

    opt = optimizer.optimize_model(
        str(src), model_type="bert", num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size, opt_level=0, use_gpu=False,
    )
    opt.save_model_to_file(str(dst))
    stats = opt.get_fused_operator_statistics()
    return {k: v for k, v in stats.items() if v}


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_runner(session, feed: dict):
    dtypes = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
    ort_feed = {i.name: np.ascontiguousarray(feed[i.name], dtype=dtypes.get(i.type, np.int64))
                for i in session.get_inputs()}
    return lambda: session.run(["last_hidden_state"], ort_feed)[0]


def torch_runner(model, feed: dict):
    import torch

    args = {k: torch.from_numpy(v) for k, v in feed.items()}

    def run():
        with torch.inference_mode():
            return model(**args).last_hidden_state

    return run


# ---------------------------------------------------------------------------
# Reporting


def cpu_model() -> str:
    """The CPU's name, with its family and model where the name alone is vague."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or fields.get("hardware") or fields.get("cpu model")
    if not name:
        return platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def versions(bertrt: Path) -> dict:
    import onnxruntime
    import torch
    import transformers

    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    for name in ("onnx", "openvino", "nncf", "ctranslate2"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    try:
        out["bertrt"] = subprocess.run(
            [str(bertrt), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["bertrt"] = "?"
    try:
        repo = Path(__file__).resolve().parent.parent
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        out["repo_commit"] = rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return out


def fmt_ms(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def fmt_ratio(num, den) -> str:
    return "n/a" if num is None or den is None else f"{num / den:.2f}x"


def forward_flops(config, batch: int, length: int) -> float:
    """Multiply-adds (x2) of one BertModel forward: the six linears and the two attention
    products of every layer; embeddings, softmax, LayerNorm and GELU are left out."""
    h, i = config.hidden_size, config.intermediate_size
    linears = 2 * batch * length * (4 * h * h + 2 * h * i)
    attention = 2 * 2 * batch * length * length * h
    return config.num_hidden_layers * (linears + attention)


# Which of cpu_peak's measured peaks bound each precision (the fastest of them counts:
# AMX's tile products where the CPU has them, else the widest vector instruction).
PEAK_OF = {"f32": ("f32_fma",), "bf16": ("bf16_dot", "amx_bf16"), "int8": ("int8_dot", "amx_int8")}


def peak_of(peak: dict | None, group: str) -> tuple[str | None, float | None]:
    """(name, GOP/s) of the fastest measured peak that bounds `group`, or (None, None)."""
    found = [(name, (peak or {}).get(name)) for name in PEAK_OF[group]]
    found = [(name, gops) for name, gops in found if gops]
    return max(found, key=lambda f: f[1]) if found else (None, None)


def print_tables(label: str, config, rows: list[dict], engines: list[tuple[str, str]],
                 peak: dict | None) -> None:
    """One table per precision: every engine of it, bertrt against the fastest peer, and the
    floor (FLOPs over the measured peak of that precision's widest instruction)."""
    print()
    print(f"== {label}: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"{config.num_attention_heads} heads, intermediate {config.intermediate_size} ==")
    for group in ("f32", "bf16", "int8"):
        members = [(k, t) for k, t in engines if peers.precision(k) == group]
        ours = [(k, t) for k, t in members if k.startswith("bertrt")]
        theirs = [k for k, _ in members if not k.startswith("bertrt")]
        if not members:
            continue
        peak_name, gops = peak_of(peak, group)
        head = ["shape", "GFLOP"] + [f"{t} ms" for _, t in members]
        if ours and theirs:
            head += [f"{t}/best peer" for _, t in ours]
        head += [f"floor ms"] + [f"{t} % peak" for _, t in ours]
        widths = [max(8, len(h)) for h in head]
        print(f"-- {group}" + (f" (floor: {peak_name} peak {gops:.0f} GOP/s)" if gops else ""))
        print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
        for row in rows:
            cells = [row["shape"], f"{row['gflop']:.2f}"] + [fmt_ms(row.get(k)) for k, _ in members]
            best = min((row[k] for k in theirs if row.get(k) is not None), default=None)
            if ours and theirs:
                cells += [fmt_ratio(row.get(k), best) for k, _ in ours]
            floor = row["gflop"] / gops * 1e3 if gops else None
            cells.append(fmt_ms(floor))
            cells += ["n/a" if floor is None or row.get(k) is None else f"{100 * floor / row[k]:.0f}%"
                      for k, _ in ours]
            print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))


def measure_peak(path: Path, threads: int) -> dict | None:
    """cpu_peak's JSON (GOP/s per precision at `threads`), or None without the binary."""
    if not path.is_file():
        return None
    proc = subprocess.run([str(path), str(threads)], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mean_pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of [batch, seq, width] over the positions whose mask is 1."""
    m = mask.astype(np.float64)[:, :, None]
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)


def lowest_cosine(out: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    a, b = mean_pooled(out, mask), mean_pooled(reference, mask)
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.min())


# ---------------------------------------------------------------------------
# Setting up every engine of one model


class Setup:
    """What the engines of one model share while they are set up and timed."""

    def __init__(self, spec, args, folder, config, model, tmp: Path, result: dict):
        self.spec, self.args, self.folder, self.config, self.model = spec, args, folder, config, model
        self.tmp, self.result = tmp, result
        self.acc_feed = inputs(*args.accuracy_shape, config.vocab_size)
        self.runners: dict[str, object] = {}  # key -> (shape -> zero-argument forward)
        self.outputs: dict[str, np.ndarray] = {}  # key -> last_hidden_state of acc_feed
        # What the peak-RSS probes load: the checkpoint, bertrt and the prepared files.
        self.files: dict = {"folder": str(folder), "vocab": config.vocab_size, "bertrt": str(args.bertrt)}

    def feed(self, shape):
        return inputs(*shape, self.config.vocab_size)

    def add(self, key: str, make_runner) -> None:
        """Registers `make_runner(feed) -> forward` and records its accuracy output."""
        self.runners[key] = lambda shape: make_runner(self.feed(shape))
        self.outputs[key] = np.asarray(make_runner(self.acc_feed)(), dtype=np.float64)

    def note(self, text: str) -> None:
        self.result["notes"].append(text)
        print(f"[{self.spec}] note: {text}", flush=True)


def setup_onnx_engines(s: Setup, wanted: set, shapes) -> None:
    """ORT (plain, fused, int8) and OpenVINO (f32, bf16, int8), all from one ONNX export."""
    import torch

    onnx_path, fused_path = s.tmp / "model.onnx", s.tmp / "model.fused.onnx"
    print(f"[{s.spec}] exporting ONNX", flush=True)
    # An eager-attention copy: the pattern ORT's optimizer fuses.
    eager, _ = load_bert(s.folder, torch.float32, "eager")
    export_onnx(eager, onnx_path)
    del eager
    gc.collect()
    variants = [("ort", onnx_path)]
    if "ort_fused" in wanted:
        try:
            s.result["ort_fused_ops"] = fuse_onnx(onnx_path, fused_path, s.config)
            variants.append(("ort_fused", fused_path))
            if s.result["ort_fused_ops"].get("Attention", 0) != s.config.num_hidden_layers:
                s.note(f"ORT-fused: fusions {s.result['ort_fused_ops']}")
        except Exception as e:  # noqa: BLE001 - report and go on
            s.note(f"ORT-fused skipped: {type(e).__name__}: {e}")
    if "ort_int8" in wanted:
        source, int8_path = variants[-1][1], s.tmp / "model.int8.onnx"
        print(f"[{s.spec}] ORT int8: quantize_dynamic of {source.name}", flush=True)
        peers.ort_int8_prepare(source, int8_path)
        variants.append(("ort_int8", int8_path))
        s.result["ort_int8_source"] = source.name
    for key, path in variants:
        s.files[key] = str(path)
        session = ort_session(path, s.args.threads)
        s.add(key, lambda feed, session=session: ort_runner(session, feed))

    ov_keys = [k for k in ("openvino", "openvino_bf16", "openvino_int8") if k in wanted]
    if not ov_keys:
        return
    print(f"[{s.spec}] OpenVINO: IR{' and NNCF int8' if 'openvino_int8' in ov_keys else ''}", flush=True)
    s.files["openvino"] = peers.openvino_prepare(
        onnx_path, s.tmp, s.config.vocab_size, s.args.calibration, "openvino_int8" in ov_keys)
    for key in ov_keys:
        xml, hint = peers.openvino_xml(key, s.files["openvino"]), peers.openvino_hint(key)
        compiled = {shape: peers.openvino_compile(xml, shape, s.args.threads, hint)
                    for shape in {*shapes, s.args.accuracy_shape}}
        chosen = str(next(iter(compiled.values())).get_property("INFERENCE_PRECISION_HINT"))
        s.result.setdefault("openvino_precision", {})[key] = chosen
        if hint and {"f32": "'float32'", "bf16": "'bfloat16'"}[hint] not in chosen:
            s.note(f"{key}: asked for {hint}, OpenVINO runs {chosen}")
        s.runners[key] = lambda shape, c=compiled: peers.openvino_runner(c[shape], s.feed(shape))
        s.outputs[key] = np.asarray(
            peers.openvino_runner(compiled[s.args.accuracy_shape], s.acc_feed)(), dtype=np.float64)


def setup_torch_engines(s: Setup, wanted: set, shapes) -> None:
    """PyTorch eager (float32, sdpa attention), torch.compile, and CTranslate2 from the same weights."""
    import torch

    s.add("pytorch", lambda feed: torch_runner(s.model, feed))
    if "torch_compile" in wanted:
        try:
            compiled = torch.compile(s.model)
            for shape in shapes:
                print(f"[{s.spec}] torch.compile {shape[0]}x{shape[1]} (compiling)", flush=True)
                torch_runner(compiled, s.feed(shape))()
            s.add("torch_compile", lambda feed: torch_runner(compiled, feed))
        except Exception as e:  # noqa: BLE001 - optional path
            s.note(f"torch.compile skipped: {type(e).__name__}: {str(e)[:200]}")
    ct2_keys = [k for k in ("ct2", "ct2_int8") if k in wanted]
    if ct2_keys:
        print(f"[{s.spec}] CTranslate2: converting", flush=True)
        try:
            s.files["ct2"] = peers.ct2_prepare(s.model, s.tmp)
        except Exception as e:  # noqa: BLE001 - report and go on
            s.note(f"CTranslate2 skipped: {type(e).__name__}: {str(e)[:200]}")
            return
        for key in ct2_keys:
            encoder = peers.ct2_load(s.files["ct2"], key, s.args.threads)
            s.add(key, lambda feed, encoder=encoder: peers.ct2_runner(encoder, feed))


def time_rounds(s: Setup, engines, shapes) -> dict:
    """Every engine at every shape in --rounds rotating rounds; the median of round medians."""
    args = s.args
    rounds: dict[tuple[int, int], dict[str, list]] = {shape: {} for shape in shapes}
    order = [key for key, _ in engines if key in s.runners or key.startswith("bertrt")]
    for r in range(args.rounds):
        turn = order[r % len(order):] + order[:r % len(order)]
        print(f"[{s.spec}] round {r + 1}/{args.rounds}: {', '.join(turn)}", flush=True)
        for key in turn:
            if key.startswith("bertrt"):
                dtype = "f32" if key == "bertrt" else key.split("_", 1)[1]
                points = run_bertrt_bench(args.bertrt, s.folder, shapes, args.iters, args.threads, dtype)
                for shape, point in points.items():
                    if shape in rounds:
                        rounds[shape].setdefault(key, []).append(point)
                continue
            for shape in shapes:
                point = time_fn(s.runners[key](shape), args.warmup, args.iters)
                rounds[shape].setdefault(key, []).append(point)
    timings: dict[tuple[int, int], dict] = {shape: {} for shape in shapes}
    for shape in shapes:
        for key, points in rounds[shape].items():
            timings[shape][key] = {
                "median_ms": float(np.median([p["median_ms"] for p in points])),
                "p90_ms": float(np.median([p["p90_ms"] for p in points])),
                "round_medians_ms": [p["median_ms"] for p in points],
            }
    return timings


def peak_rss(s: Setup, keys: list[str], shape) -> dict:
    """Each engine alone in a fresh process: set up, one forward of `shape`, peak RSS (MiB)."""
    out = {}
    script = Path(__file__).resolve().parent / "compare_peers.py"
    for key in ["python", *keys]:
        if key == "torch_compile":
            continue
        cmd = [sys.executable, str(script), "probe", "--engine", key, "--shape", f"{shape[0]}x{shape[1]}",
               "--threads", str(s.args.threads), "--spec", json.dumps(s.files)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            s.note(f"peak RSS of {key}: probe failed: {proc.stderr.strip()[-300:]}")
            continue
        out[key] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mib"]
    return out


def compare_model(spec: str, args, shapes, engines) -> dict:
    import torch

    label, folder = resolve_model(spec, args.bertrt, args.threads)
    print(f"\n[{spec}] {label}: {folder}", flush=True)
    result: dict = {"label": label, "folder": str(folder), "notes": [], "shapes": [f"{b}x{l}" for b, l in shapes]}
    model, config = load_bert(folder, torch.float32, "sdpa")
    result["config"] = read_config(folder)
    wanted = {key for key, _ in engines}
    with tempfile.TemporaryDirectory(prefix="bertrt-compare-") as tmp:
        s = Setup(spec, args, folder, config, model, Path(tmp), result)
        # Every engine is set up first (sessions, models, compiled graphs kept), then timed
        # in --rounds rounds that each time every engine at every shape, in a rotating
        # order: a slow spell of these shared machines then lands on all engines alike.
        setup_onnx_engines(s, wanted, shapes)
        setup_torch_engines(s, wanted, shapes)
        for dtype in args.bertrt_dtypes:
            try:
                s.outputs[bertrt_key(dtype)] = run_bertrt_raw(args.bertrt, folder, s.acc_feed,
                                                              args.threads, dtype)
            except Exception as e:  # noqa: BLE001 - the speed numbers still stand
                s.note(f"bertrt {dtype} accuracy: {e}")
        timings = time_rounds(s, engines, shapes)
        s.runners.clear()
        gc.collect()
        if not args.no_rss:
            largest = max(shapes, key=lambda bl: (bl[0] * bl[1], bl[1]))
            print(f"[{spec}] peak RSS probes at {largest[0]}x{largest[1]}", flush=True)
            result["peak_rss_shape"] = f"{largest[0]}x{largest[1]}"
            result["peak_rss_mib"] = peak_rss(s, [k for k, _ in engines], largest)
        outputs = s.outputs
    del s, model
    gc.collect()
    if args.torch_compile:
        torch._dynamo.reset()

    # float64 reference.
    print(f"[{spec}] float64 reference", flush=True)
    acc_feed = inputs(*args.accuracy_shape, config.vocab_size)
    ref_model, _ = load_bert(folder, torch.float64, "eager")
    reference = torch_runner(ref_model, acc_feed)().numpy()
    del ref_model
    gc.collect()

    rows = []
    for shape in shapes:
        row = {"shape": f"{shape[0]}x{shape[1]}", "batch": shape[0], "len": shape[1],
               "gflop": forward_flops(config, *shape) / 1e9}
        for key, _ in engines:
            point = timings[shape].get(key)
            row[key] = point["median_ms"] if point else None
            if point:
                row[f"{key}_p90"] = point["p90_ms"]
                row[f"{key}_rounds"] = point["round_medians_ms"]
        rows.append(row)
    result["timings"] = rows
    accuracy = {"shape": list(args.accuracy_shape), "max_abs_reference": float(np.abs(reference).max())}
    cosines = {}
    for key, _ in engines:
        out = outputs.get(key)
        if out is None:
            accuracy[key] = cosines[key] = None
        elif out.shape != reference.shape:
            accuracy[key] = cosines[key] = None
            result["notes"].append(f"{key}: output shape {out.shape} != reference {reference.shape}")
        else:
            accuracy[key] = float(np.abs(out - reference).max())
            cosines[key] = lowest_cosine(out, reference, acc_feed["attention_mask"])
    result["accuracy"] = accuracy
    result["embedding_cosine"] = cosines
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3,
                        help="timing rounds, each over every engine and shape (median of rounds)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs for the Python engines")
    parser.add_argument("--bertrt", type=Path, default=Path("target/release/bertrt"))
    parser.add_argument("--bertrt-dtypes", default="f32,bf16,int8",
                        help="bertrt's CPU dtypes to run, comma-separated: f32, bf16, int8")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"peers beyond ORT and PyTorch, comma-separated from {','.join(PEERS)}, or none")
    parser.add_argument("--calibration", type=int, default=32,
                        help="NNCF calibration inputs for OpenVINO-int8 (seeded random ids, 128 tokens)")
    parser.add_argument("--models", default="minilm,bert-base")
    parser.add_argument("--shapes", default="1x128,8x128,32x128,1x512",
                        help="shapes for every model but bert-base")
    parser.add_argument("--bert-base-shapes", default="1x128,8x128")
    parser.add_argument("--peak", type=Path, default=Path("target/release/examples/cpu_peak"),
                        help="the cpu_peak example (the floors); missing: no floors")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS probes")
    parser.add_argument("--accuracy-shape", default="2x128")
    parser.add_argument("--no-ort-fused", action="store_true",
                        help="skip the onnxruntime.transformers-optimized ORT column")
    parser.add_argument("--torch-compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--json", type=Path, help="also save every number to this file")
    parser.add_argument("--markdown", action="store_true", help="also print the README's tables")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="print the report and the README's tables of a saved run, and stop")
    args = parser.parse_args()
    if args.render:
        report = json.loads(args.render.read_text())
        report.setdefault("engines", default_engines())
        print_report(report)
        print_markdown(report)
        return 0
    if args.threads < 1 or args.iters < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--threads, --iters and --rounds must be >= 1, --warmup >= 0")
    shapes = parse_shapes(args.shapes)
    base_shapes = parse_shapes(args.bert_base_shapes)
    chosen = [p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none"]
    if any(p not in PEERS for p in chosen):
        parser.error(f"--peers: expected some of {','.join(PEERS)} or none, got {args.peers}")
    args.bertrt_dtypes = [d.strip() for d in args.bertrt_dtypes.split(",") if d.strip()]
    bad = [d for d in args.bertrt_dtypes if d not in ("f32", "bf16", "int8")]
    if bad or not args.bertrt_dtypes:
        parser.error(f"--bertrt-dtypes: expected f32, bf16 and/or int8, got {args.bertrt_dtypes}")
    args.accuracy_shape = parse_shapes(args.accuracy_shape)[0]
    if not args.bertrt.is_file():
        parser.error(f"--bertrt: {args.bertrt} not found (cargo build --release --bin bertrt)")
    args.bertrt = args.bertrt.resolve()

    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    import transformers

    transformers.logging.set_verbosity_error()

    engines = [(bertrt_key(d), "bertrt" if d == "f32" else f"bertrt-{d}") for d in args.bertrt_dtypes]
    engines.append(("ort", "ORT"))
    if not args.no_ort_fused:
        engines.append(("ort_fused", "ORT-fused"))
    engines.append(("pytorch", "PyTorch"))
    if args.torch_compile:
        engines.append(("torch_compile", "compile"))
    engines += [(PEERS[p], peer_title(p)) for p in PEERS if p in chosen]

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    machine = {
        "cpu": cpu_model(),
        "peak_gops": measure_peak(args.peak, args.threads),
        "cpus": cpus,
        "threads": args.threads,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
    }
    report = {
        "machine": machine,
        "versions": versions(args.bertrt),
        "iters": args.iters,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "models": {},
    }
    started = time.time()
    # Run a copy, so that a rebuild during the run cannot mix two binaries.
    original = args.bertrt
    binary_mtime = original.stat().st_mtime
    with tempfile.TemporaryDirectory(prefix="bertrt-compare-bin-") as bin_dir:
        args.bertrt = Path(bin_dir) / "bertrt"
        shutil.copy2(original, args.bertrt)
        for spec in [m.strip() for m in args.models.split(",") if m.strip()]:
            report["models"][spec] = compare_model(
                spec, args, base_shapes if spec == "bert-base" else shapes, engines)
    args.bertrt = original
    report["elapsed_s"] = time.time() - started
    report["bertrt_binary_changed"] = original.stat().st_mtime != binary_mtime
    if hasattr(os, "getloadavg"):
        machine["loadavg_end"] = list(os.getloadavg())

    report["engines"] = engines
    print_report(report)
    if args.markdown:
        print_markdown(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nsaved {args.json}")
    return 0


def print_report(report: dict) -> None:
    """The text report of a run (also of a saved one, with --render)."""
    engines = [tuple(e) for e in report["engines"]]
    machine, v = report["machine"], report["versions"]
    threads, rounds, iters, warmup = machine["threads"], report["rounds"], report["iters"], report["warmup"]
    print()
    print(f"machine: {machine['cpu']}, {machine['cpus']} CPUs available; threads per engine: {threads}"
          + (f"; 1-minute load average {machine['loadavg_start'][0]:.2f} at the start, "
             f"{machine['loadavg_end'][0]:.2f} at the end (this run adds about {threads})"
             if machine.get("loadavg_start") and machine.get("loadavg_end") else ""))
    print(f"versions: {v.get('bertrt', '?')}"
          + (f" (tree {v['repo_commit']})" if "repo_commit" in v else "")
          + ", " + ", ".join(f"{k} {v[k]}" for k in PACKAGES if k in v)
          + f", python {v['python']}")
    peak = machine.get("peak_gops")
    if peak:
        print("measured peaks (cpu_peak, all threads, GOP/s): "
              + ", ".join(f"{k} {x:.0f}" for k, x in peak.items() if k != "threads" and x))
    print(f"timing: {rounds} interleaved round{'s' if rounds != 1 else ''}, each the median of "
          f"{iters} wall-clock runs (Python engines after {warmup} warm-up "
          f"run{'s' if warmup != 1 else ''}, bertrt after its one); the median round is shown; "
          "ratios < 1 mean bertrt is faster")
    if report.get("bertrt_binary_changed"):
        print("note: bertrt was rebuilt during the run; the run used a copy taken at its start")
    start_load = machine.get("loadavg_start")
    if start_load and start_load[0] > max(machine["cpus"] - threads, 0) + 1.0:
        print(f"warning: 1-minute load average {start_load[0]:.2f} on {machine['cpus']} CPUs at the start: "
              "other work shared the CPUs, so the timings are unreliable (PyTorch's OpenMP threads suffer most)")
    for res in report["models"].values():
        config = SimpleNamespace(**res["config"])
        print_tables(res["label"], config, res["timings"], engines, peak)
        acc = res["accuracy"]
        b, l = acc["shape"]
        print(f"accuracy vs float64 transformers, {b}x{l}: last_hidden_state max |diff| "
              f"(max |reference| = {acc['max_abs_reference']:.3g}), lowest mean-pooled embedding cosine:")
        cosines = res.get("embedding_cosine", {})
        for key, title in engines:
            value, cos = acc.get(key), cosines.get(key)
            print(f"  {title:<14} {'n/a' if value is None else f'{value:.3e}':>10}  "
                  f"{'n/a' if cos is None else f'{cos:.6f}'}")
        if res.get("peak_rss_mib"):
            rss = res["peak_rss_mib"]
            print(f"peak RSS at {res['peak_rss_shape']}, each engine alone in a fresh process (MiB; "
                  f"a bare Python with numpy: {rss.get('python', float('nan')):.0f}):")
            print("  " + ", ".join(f"{title} {rss[key]:.0f}" for key, title in engines if key in rss))
        for note in res["notes"]:
            print(f"  note: {note}")


def print_markdown(report: dict) -> None:
    """The README's tables: one per precision (every model and shape, every engine of
    that precision, bertrt against the fastest peer, the floor), accuracy, peak RSS."""
    engines = [tuple(e) for e in report["engines"]]
    peak = report["machine"].get("peak_gops") or {}
    models = list(report["models"].values())
    short = {"bert-base": "BERT-base shape"}
    names = [short.get(spec, res["label"]) for spec, res in report["models"].items()]
    for group in ("f32", "bf16", "int8"):
        members = [(k, t) for k, t in engines if peers.precision(k) == group]
        theirs = [k for k, _ in members if not k.startswith("bertrt")]
        if not members:
            continue
        _, gops = peak_of(peak, group)
        print(f"\n{group}, ms:\n")
        head = ["model", "batch x tokens"] + [t for _, t in members]
        head += ["bertrt / fastest peer", "floor ms (bertrt's share of peak)"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for name, res in zip(names, models):
            for row in res["timings"]:
                ours = next((row.get(k) for k, _ in members if k.startswith("bertrt")), None)
                best = min((row[k] for k in theirs if row.get(k) is not None), default=None)
                floor = row["gflop"] / gops * 1e3 if gops else None
                cells = [name, row["shape"].replace("x", " x ")]
                cells += [md_ms(row.get(k)) for k, _ in members]
                cells.append(fmt_ratio(ours, best))
                cells.append("n/a" if floor is None or ours is None
                             else f"{md_ms(floor)} ({100 * floor / ours:.0f}%)")
                print("| " + " | ".join(cells) + " |")
    print("\naccuracy against float64 transformers (last_hidden_state max |diff|, lowest "
          "mean-pooled embedding cosine):\n")
    print("| engine | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(models))
    for key, title in engines:
        cells = []
        for res in models:
            d, cos = res["accuracy"].get(key), res.get("embedding_cosine", {}).get(key)
            cells.append("n/a" if d is None else f"{d:.1e} / {cos:.6f}")
        print(f"| {title} | " + " | ".join(cells) + " |")
    print("\npeak RSS, MiB (each engine alone in a fresh process, one forward):\n")
    print("| engine | " + " | ".join(f"{name} {res.get('peak_rss_shape', '').replace('x', ' x ')}"
                                    for name, res in zip(names, models)) + " |")
    print("|---|" + "---|" * len(models))
    for key, title in engines:
        cells = [f"{res.get('peak_rss_mib', {})[key]:.0f}" if key in res.get("peak_rss_mib", {}) else "n/a"
                 for res in models]
        print(f"| {title} | " + " | ".join(cells) + " |")


def md_ms(value) -> str:
    """Milliseconds to about three significant digits."""
    if value is None:
        return "n/a"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def default_engines() -> list[tuple[str, str]]:
    """The engines of a run with the default options (for a saved run without its list)."""
    engines = [(bertrt_key(d), "bertrt" if d == "f32" else f"bertrt-{d}") for d in ("f32", "bf16", "int8")]
    engines += [("ort", "ORT"), ("ort_fused", "ORT-fused"), ("pytorch", "PyTorch")]
    return engines + [(PEERS[p], peer_title(p)) for p in PEERS]


def peer_title(name: str) -> str:
    return name.replace("openvino", "OpenVINO").replace("ort", "ORT").replace("ct2", "CT2")


if __name__ == "__main__":
    sys.exit(main())
