#!/usr/bin/env python3
"""Generate the pytorch_model.bin fixtures (tests/fixtures/torch/) from the fill_mask
pipeline fixture's checkpoint (BertForMaskedLM with a tied decoder), each a twin of a
safetensors checkpoint whose outputs bertrt must reproduce bit for bit:

    mlm/            save_pretrained(safe_serialization=False): pytorch_model.bin
                    (twin: tests/fixtures/pipelines/fill_mask)
    mlm_sharded/    the same in shards of 40 kB with pytorch_model.bin.index.json
    mlm_f16/        the model in float16, as pytorch_model.bin (twin: mlm_f16_twin/,
                    the same float16 model as model.safetensors)
    noncontig/      torch.save of a state dict whose every 2-d weight is a transposed
                    (non-contiguous) view, with storage offsets (twin: fill_mask)
    evil/           a pytorch_model.bin whose pickle calls os.system (must be refused,
                    and nothing may run: it would create /tmp/bertrt-pickle-pwned)
    legacy/         torch.save(..., _use_new_zipfile_serialization=False): refused
                    with an error that says how to re-save it

Run from the repository root with the environment of tools/requirements-fixtures.txt:

    python3 tools/gen_torch_fixtures.py
"""

from __future__ import annotations

import collections
import io
import shutil
import zipfile
from pathlib import Path

import torch
from transformers import BertForMaskedLM

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "tests/fixtures/pipelines/fill_mask"
OUT = ROOT / "tests/fixtures/torch"


def fresh(name: str) -> Path:
    d = OUT / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    shutil.copy(SRC / "config.json", d / "config.json")
    return d


def main() -> None:
    torch.manual_seed(0)
    model = BertForMaskedLM.from_pretrained(SRC).eval()
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight

    model.save_pretrained(fresh("mlm"), safe_serialization=False)
    (OUT / "mlm" / "config.json").write_text((SRC / "config.json").read_text())

    d = fresh("mlm_sharded")
    model.save_pretrained(d, safe_serialization=False, max_shard_size="40kB")
    (d / "config.json").write_text((SRC / "config.json").read_text())
    assert (d / "pytorch_model.bin.index.json").is_file(), "not sharded"

    half = BertForMaskedLM.from_pretrained(SRC).eval().half()
    d = fresh("mlm_f16")
    half.save_pretrained(d, safe_serialization=False)
    (d / "config.json").write_text((SRC / "config.json").read_text())
    d = fresh("mlm_f16_twin")
    half.save_pretrained(d, safe_serialization=True)
    (d / "config.json").write_text((SRC / "config.json").read_text())

    # Every 2-d weight as the transpose of a transposed copy: the same values in a
    # column-major storage; and every 1-d weight at an offset into a larger storage.
    sd = collections.OrderedDict()
    for k, v in model.state_dict().items():
        v = v.detach().clone()
        if v.dim() == 2:
            sd[k] = v.t().contiguous().t()
            assert not sd[k].is_contiguous()
        elif v.dim() == 1 and v.dtype == torch.float32:
            big = torch.cat([torch.full((3,), float("nan")), v, torch.full((2,), float("nan"))])
            sd[k] = big[3 : 3 + v.numel()]
            assert sd[k].storage_offset() == 3
        else:
            sd[k] = v
    d = fresh("noncontig")
    torch.save(sd, d / "pytorch_model.bin")

    d = fresh("legacy")
    torch.save(model.state_dict(), d / "pytorch_model.bin", _use_new_zipfile_serialization=False)

    # A pickle that would run `os.system(...)` if it were unpickled by Python.
    payload = b"\x80\x02cos\nsystem\nq\x00X\x20\x00\x00\x00touch /tmp/bertrt-pickle-pwned && x\x85q\x01Rq\x02."
    payload = payload.replace(b"X\x20\x00\x00\x00touch /tmp/bertrt-pickle-pwned && x",
                              b"X" + len(b"touch /tmp/bertrt-pickle-pwned").to_bytes(4, "little")
                              + b"touch /tmp/bertrt-pickle-pwned")
    d = fresh("evil")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    (d / "pytorch_model.bin").write_bytes(buf.getvalue())

    (OUT / "README.md").write_text(__doc__.split("\n\n", 1)[0].replace("Generate the", "The") + ".\n\n"
                                   + "Made by tools/gen_torch_fixtures.py; see its docstring for each folder.\n")


if __name__ == "__main__":
    main()
