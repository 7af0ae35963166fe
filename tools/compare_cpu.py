#!/usr/bin/env python3
"""Compare bertrt with ONNX Runtime and PyTorch on the CPU: speed and accuracy.

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

    cargo build --release --bin bertrt
    python -m venv .venv-compare
    .venv-compare/bin/pip install -r tools/requirements-compare.txt
    nice -n 19 .venv-compare/bin/python tools/compare_cpu.py --threads 2 --iters 10

Options: --threads N (2), --iters N (10), --rounds N (3), --warmup N (2), --bertrt PATH
(./target/release/bertrt), --bertrt-dtypes LIST (f32; e.g. f32,bf16,int8),
--models LIST (minilm,bert-base), --shapes LIST
(1x128,8x128,32x128), --accuracy-shape BxL (2x128), --no-ort-fused,
--torch-compile, --json FILE (save every number).
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

import numpy as np

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
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("model name", "hardware", "cpu model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    try:
        import onnx

        out["onnx"] = onnx.__version__
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


def print_table(label: str, config, rows: list[dict], engines: list[tuple[str, str]]) -> None:
    print()
    print(f"== {label}: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"{config.num_attention_heads} heads, intermediate {config.intermediate_size} ==")
    ours = [(key, title) for key, title in engines if key.startswith("bertrt")]
    has_fused = any(key == "ort_fused" for key, _ in engines)
    head = ["shape"] + [f"{title} ms" for _, title in engines]
    head += [f"{title}/ORT" for _, title in ours]
    if has_fused:
        head += [f"{title}/ORT-fused" for _, title in ours]
    head.append("PyTorch/ORT")
    widths = [max(8, len(h)) for h in head]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for row in rows:
        cells = [row["shape"]] + [fmt_ms(row.get(key)) for key, _ in engines]
        cells += [fmt_ratio(row.get(key), row.get("ort")) for key, _ in ours]
        if has_fused:
            cells += [fmt_ratio(row.get(key), row.get("ort_fused")) for key, _ in ours]
        cells.append(fmt_ratio(row.get("pytorch"), row.get("ort")))
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))


def mean_pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of [batch, seq, width] over the positions whose mask is 1."""
    m = mask.astype(np.float64)[:, :, None]
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)


def lowest_cosine(out: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    a, b = mean_pooled(out, mask), mean_pooled(reference, mask)
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.min())


# ---------------------------------------------------------------------------


def compare_model(spec: str, args, shapes, engines) -> dict:
    import torch

    label, folder = resolve_model(spec, args.bertrt, args.threads)
    print(f"\n[{spec}] {label}: {folder}", flush=True)
    result: dict = {"label": label, "folder": str(folder), "notes": []}
    model, config = load_bert(folder, torch.float32, "sdpa")
    result["config"] = read_config(folder)
    timings: dict[tuple[int, int], dict] = {s: {} for s in shapes}
    outputs: dict[str, np.ndarray] = {}
    acc_feed = inputs(*args.accuracy_shape, config.vocab_size)

    # Every engine is set up first (sessions, models, compiled graphs kept), then timed in
    # --rounds rounds that each time every engine at every shape, in a rotating order: a
    # slow spell of these shared machines then lands on all engines alike, and the
    # reported time is the median of an engine's round medians.
    runners: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bertrt-compare-") as tmp:
        # ONNX Runtime: export from an eager-attention copy (the pattern ORT fuses).
        onnx_path, fused_path = Path(tmp) / "model.onnx", Path(tmp) / "model.fused.onnx"
        print(f"[{spec}] exporting ONNX", flush=True)
        eager, _ = load_bert(folder, torch.float32, "eager")
        export_onnx(eager, onnx_path)
        del eager
        gc.collect()
        variants = [("ort", onnx_path)]
        if not args.no_ort_fused:
            try:
                result["ort_fused_ops"] = fuse_onnx(onnx_path, fused_path, config)
                variants.append(("ort_fused", fused_path))
                if result["ort_fused_ops"].get("Attention", 0) != config.num_hidden_layers:
                    result["notes"].append(f"ORT-fused: fusions {result['ort_fused_ops']}")
            except Exception as e:  # noqa: BLE001 - report and go on
                result["notes"].append(f"ORT-fused skipped: {type(e).__name__}: {e}")
        for key, path in variants:
            session = ort_session(path, args.threads)
            runners[key] = lambda shape, session=session: ort_runner(
                session, inputs(*shape, config.vocab_size))
            outputs[key] = np.asarray(ort_runner(session, acc_feed)(), dtype=np.float64)

    # PyTorch eager (float32, default attention = sdpa).
    runners["pytorch"] = lambda shape: torch_runner(model, inputs(*shape, config.vocab_size))
    outputs["pytorch"] = torch_runner(model, acc_feed)().double().numpy()

    if args.torch_compile:
        try:
            compiled = torch.compile(model)
            for shape in shapes:
                print(f"[{spec}] torch.compile {shape[0]}x{shape[1]} (compiling)", flush=True)
                torch_runner(compiled, inputs(*shape, config.vocab_size))()
            runners["torch_compile"] = lambda shape: torch_runner(
                compiled, inputs(*shape, config.vocab_size))
            outputs["torch_compile"] = torch_runner(compiled, acc_feed)().double().numpy()
        except Exception as e:  # noqa: BLE001 - optional path
            result["notes"].append(f"torch.compile skipped: {type(e).__name__}: {str(e)[:200]}")

    # bertrt's accuracy, once per dtype.
    for dtype in args.bertrt_dtypes:
        try:
            outputs[bertrt_key(dtype)] = run_bertrt_raw(args.bertrt, folder, acc_feed, args.threads, dtype)
        except Exception as e:  # noqa: BLE001 - the speed numbers still stand
            result["notes"].append(f"bertrt {dtype} accuracy: {e}")

    rounds: dict[tuple[int, int], dict[str, list]] = {s: {} for s in shapes}
    order = [key for key, _ in engines if key in runners or key.startswith("bertrt")]
    for r in range(args.rounds):
        turn = order[r % len(order):] + order[:r % len(order)]
        print(f"[{spec}] round {r + 1}/{args.rounds}: {', '.join(turn)}", flush=True)
        for key in turn:
            if key.startswith("bertrt"):
                dtype = "f32" if key == "bertrt" else key.split("_", 1)[1]
                points = run_bertrt_bench(args.bertrt, folder, shapes, args.iters, args.threads, dtype)
                for shape, point in points.items():
                    if shape in rounds:
                        rounds[shape].setdefault(key, []).append(point)
                continue
            for shape in shapes:
                point = time_fn(runners[key](shape), args.warmup, args.iters)
                rounds[shape].setdefault(key, []).append(point)
    for shape in shapes:
        for key, points in rounds[shape].items():
            timings[shape][key] = {
                "median_ms": float(np.median([p["median_ms"] for p in points])),
                "p90_ms": float(np.median([p["p90_ms"] for p in points])),
                "round_medians_ms": [p["median_ms"] for p in points],
            }
    del runners, model
    gc.collect()
    if args.torch_compile:
        torch._dynamo.reset()

    # float64 reference.
    print(f"[{spec}] float64 reference", flush=True)
    ref_model, _ = load_bert(folder, torch.float64, "eager")
    reference = torch_runner(ref_model, acc_feed)().numpy()
    del ref_model
    gc.collect()

    rows = []
    for shape in shapes:
        row = {"shape": f"{shape[0]}x{shape[1]}", "batch": shape[0], "len": shape[1]}
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
    parser.add_argument("--bertrt-dtypes", default="f32",
                        help="bertrt's CPU dtypes to run, comma-separated: f32, bf16, int8")
    parser.add_argument("--models", default="minilm,bert-base")
    parser.add_argument("--shapes", default="1x128,8x128,32x128")
    parser.add_argument("--accuracy-shape", default="2x128")
    parser.add_argument("--no-ort-fused", action="store_true",
                        help="skip the onnxruntime.transformers-optimized ORT column")
    parser.add_argument("--torch-compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--json", type=Path, help="also save every number to this file")
    args = parser.parse_args()
    if args.threads < 1 or args.iters < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--threads, --iters and --rounds must be >= 1, --warmup >= 0")
    shapes = parse_shapes(args.shapes)
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

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    machine = {
        "cpu": cpu_model(),
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
        "shapes": [f"{b}x{l}" for b, l in shapes],
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
            report["models"][spec] = compare_model(spec, args, shapes, engines)
    args.bertrt = original
    report["elapsed_s"] = time.time() - started
    report["bertrt_binary_changed"] = original.stat().st_mtime != binary_mtime
    if hasattr(os, "getloadavg"):
        machine["loadavg_end"] = list(os.getloadavg())

    # The report.
    v = report["versions"]
    print()
    print(f"machine: {machine['cpu']}, {machine['cpus']} CPUs available; threads per engine: {args.threads}"
          + (f"; 1-minute load average {machine['loadavg_start'][0]:.2f} at the start, "
             f"{machine['loadavg_end'][0]:.2f} at the end (this run adds about {args.threads})"
             if machine["loadavg_start"] else ""))
    print(f"versions: {v.get('bertrt', '?')}"
          + (f" (tree {v['repo_commit']})" if "repo_commit" in v else "")
          + f", onnxruntime {v['onnxruntime']}, torch {v['torch']}, transformers {v['transformers']}, "
          f"numpy {v['numpy']}, python {v['python']}")
    print(f"timing: {args.rounds} interleaved round{'s' if args.rounds != 1 else ''}, each the median of "
          f"{args.iters} wall-clock runs (Python engines after {args.warmup} warm-up "
          f"run{'s' if args.warmup != 1 else ''}, bertrt after its one); the median round is shown; "
          "ratios < 1 mean bertrt is faster")
    if report["bertrt_binary_changed"]:
        print(f"note: {args.bertrt} was rebuilt during the run; the run used a copy taken at its start")
    start_load = machine.get("loadavg_start")
    if start_load and start_load[0] > max(machine["cpus"] - args.threads, 0) + 1.0:
        print(f"warning: 1-minute load average {start_load[0]:.2f} on {machine['cpus']} CPUs at the start: "
              "other work shared the CPUs, so the timings are unreliable (PyTorch's OpenMP threads suffer most)")
    for spec, res in report["models"].items():
        config = transformers.BertConfig(**res["config"])
        print_table(res["label"], config, res["timings"], engines)
        acc = res["accuracy"]
        b, l = acc["shape"]
        print(f"accuracy vs float64 transformers, {b}x{l}: last_hidden_state max |diff| "
              f"(max |reference| = {acc['max_abs_reference']:.3g}), lowest mean-pooled embedding cosine:")
        cosines = res.get("embedding_cosine", {})
        for key, title in engines:
            value, cos = acc.get(key), cosines.get(key)
            print(f"  {title:<12} {'n/a' if value is None else f'{value:.3e}':>10}  "
                  f"{'n/a' if cos is None else f'{cos:.6f}'}")
        for note in res["notes"]:
            print(f"  note: {note}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nsaved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
