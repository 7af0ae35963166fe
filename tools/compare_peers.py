"""The peers of tools/compare_cpu.py beyond ONNX Runtime f32 and PyTorch, and the
peak-RSS probe that runs one engine alone in a process of its own.

Each peer is prepared once into files (an OpenVINO IR, an int8 ONNX graph, a
CTranslate2 model folder), so that the timing process and the probes load the same
thing:

* OpenVINO     the exported ONNX graph read by openvino.Core, compiled once per shape
               with static input shapes (OpenVINO's fastest case), LATENCY hint, one
               stream, INFERENCE_NUM_THREADS = --threads; f32 and bf16 through
               INFERENCE_PRECISION_HINT.
* OpenVINO-int8  NNCF post-training quantization of that graph (ModelType.TRANSFORMER,
               calibration on --calibration seeded random-id inputs of 128 tokens),
               compiled as above with OpenVINO's default precision for the rest.
* ORT-int8     onnxruntime.quantization.quantize_dynamic (QInt8 weights, per channel)
               of the fused graph when there is one, else of the plain export; the
               same session options as ORT.
* CT2, CT2-int8  CTranslate2's Transformers converter on the same weights (float32),
               loaded with compute_type float32 or int8, intra_threads = --threads.

The probe (`python tools/compare_peers.py probe ...`) sets up one engine from those
files, runs one forward of the given shape and prints its peak resident set size
(VmHWM; for bertrt, the ru_maxrss of the `bertrt bench` child it starts, which counts at
least the probe's own ~20 MiB at the fork).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def precision(key: str) -> str:
    """The precision group an engine key belongs to: f32, bf16 or int8."""
    for p in ("int8", "bf16"):
        if key.endswith(p):
            return p
    return "f32"


def random_feed(batch: int, length: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, size=(batch, length), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


# ---------------------------------------------------------------------------
# OpenVINO


def openvino_prepare(onnx_path: Path, out: Path, vocab: int, calibration: int,
                     int8: bool) -> dict[str, str]:
    """OpenVINO IRs of the export: {"openvino": xml, "openvino_int8": xml}."""
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    paths = {"openvino": str(out / "openvino.xml")}
    ov.save_model(model, paths["openvino"], compress_to_fp16=False)
    if int8:
        import nncf

        samples = [random_feed(1, 128, vocab, seed) for seed in range(calibration)]
        quantized = nncf.quantize(
            model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
            subset_size=calibration,
        )
        paths["openvino_int8"] = str(out / "openvino_int8.xml")
        ov.save_model(quantized, paths["openvino_int8"], compress_to_fp16=False)
    return paths


def openvino_compile(xml: str, shape: tuple[int, int], threads: int, hint: str | None):
    """A compiled model with static [batch, len] inputs; `hint` is f32, bf16 or None."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(xml)
    model.reshape({i.get_any_name(): list(shape) for i in model.inputs})
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
    }
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    return core.compile_model(model, "CPU", config)


def openvino_runner(compiled, feed: dict):
    request = compiled.create_infer_request()
    names = [i.get_any_name() for i in compiled.inputs]
    ov_feed = {n: np.ascontiguousarray(feed[n]) for n in names}

    def run():
        request.infer(ov_feed)
        return request.get_output_tensor(0).data

    return run


def openvino_hint(key: str) -> str | None:
    return {"openvino": "f32", "openvino_bf16": "bf16"}.get(key)


def openvino_xml(key: str, paths: dict) -> str:
    return paths["openvino_int8" if key == "openvino_int8" else "openvino"]


# ---------------------------------------------------------------------------
# ONNX Runtime int8


def ort_int8_prepare(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import onnx

    # The fused graph's com.microsoft ops defeat ONNX shape inference: their outputs are float.
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


# ---------------------------------------------------------------------------
# CTranslate2


def ct2_prepare(model, out: Path) -> str:
    """Converts a transformers BertModel (float32) into a CTranslate2 folder."""
    import ctranslate2
    import transformers

    hf = out / "hf"
    hf.mkdir(parents=True, exist_ok=True)
    if getattr(model, "pooler", None) is None:
        # The converter maps the pooler too; it has no effect on last_hidden_state.
        with_pooler = transformers.BertModel(model.config, add_pooling_layer=True)
        with_pooler.load_state_dict(model.state_dict(), strict=False)
        model = with_pooler.eval()
    model.save_pretrained(str(hf), safe_serialization=True)
    # ids are fed directly: the vocabulary only has to have the model's size.
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"t{i}" for i in range(model.config.vocab_size - len(vocab))]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizer(str(hf / "vocab.txt")).save_pretrained(str(hf))
    folder = out / "ct2"
    ctranslate2.converters.TransformersConverter(str(hf)).convert(str(folder), force=True)
    return str(folder)


def ct2_load(folder: str, key: str, threads: int):
    import ctranslate2

    compute = "int8" if key == "ct2_int8" else "float32"
    return ctranslate2.Encoder(folder, device="cpu", compute_type=compute,
                               intra_threads=threads, inter_threads=1)


def ct2_runner(encoder, feed: dict):
    ids = feed["input_ids"].tolist()
    types = feed["token_type_ids"].tolist()

    def run():
        out = encoder.forward_batch(ids, token_type_ids=types)
        return np.asarray(out.last_hidden_state)

    return run


# ---------------------------------------------------------------------------
# The peak-RSS probe


def probe(args) -> dict:
    """Sets up one engine from its prepared files, runs one forward, reports peak RSS."""
    shape = tuple(int(x) for x in args.shape.split("x"))
    key = args.engine
    spec = json.loads(args.spec)
    feed = random_feed(*shape, spec["vocab"], 0)
    if key.startswith("bertrt"):
        dtype = "f32" if key == "bertrt" else key.split("_", 1)[1]
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
        subprocess.run([spec["bertrt"], "bench", "--model", spec["folder"], "--shapes", args.shape,
                        "--iters", "1", "--dtype", dtype], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        return {"engine": key, "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    if key == "python":
        run = lambda: None  # noqa: E731 - the interpreter with numpy, for the baseline
    elif key.startswith("ort"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from compare_cpu import ort_runner, ort_session

        run = ort_runner(ort_session(Path(spec[key]), args.threads), feed)
    elif key.startswith("openvino"):
        run = openvino_runner(openvino_compile(openvino_xml(key, spec["openvino"]), shape,
                                               args.threads, openvino_hint(key)), feed)
    elif key.startswith("ct2"):
        run = ct2_runner(ct2_load(spec["ct2"], key, args.threads), feed)
    elif key == "pytorch":
        import torch

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from compare_cpu import load_bert, torch_runner

        torch.set_num_threads(args.threads)
        model, _ = load_bert(Path(spec["folder"]), torch.float32, "sdpa")
        run = torch_runner(model, feed)
    else:
        raise SystemExit(f"probe: unknown engine {key!r}")
    run()
    # VmHWM, not ru_maxrss: Linux carries a forked parent's peak across exec into ru_maxrss.
    status = Path("/proc/self/status").read_text()
    hwm_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return {"engine": key, "peak_rss_mib": hwm_kib / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description="peak-RSS probe of one engine (used by compare_cpu.py)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--engine", required=True)
    p.add_argument("--shape", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--spec", required=True, help="JSON: folder, vocab, bertrt and the prepared files")
    args = parser.parse_args()
    print(json.dumps(probe(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
