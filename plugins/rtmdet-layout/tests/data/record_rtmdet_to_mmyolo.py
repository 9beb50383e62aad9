"""Records what mmyolo 0.6.0's REAL tools/model_converters/rtmdet_to_mmyolo.py produces from the
mmdet RTMDet fixture (tests/fixtures/checkpoints/rtmdet_nano_mmdet.pth): the output key list in
order and the output `meta`. plugins/rtmdet-layout/tests/layout.rs asserts our anchored mapping
gives the same keys (and the reverse mapping gives the mmdet keys back).

Run: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /work/main/.venv-fixtures/bin/python \
    plugins/rtmdet-layout/tests/data/record_rtmdet_to_mmyolo.py > plugins/rtmdet-layout/tests/data/rtmdet_to_mmyolo_keys.json
"""
import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile

import mmyolo
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
SRC = os.path.join(ROOT, "tests", "fixtures", "checkpoints", "rtmdet_nano_mmdet.pth")
SCRIPT = os.path.join(os.path.dirname(mmyolo.__file__), ".mim", "tools", "model_converters", "rtmdet_to_mmyolo.py")

spec = importlib.util.spec_from_file_location("rtmdet_to_mmyolo", SCRIPT)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)

with tempfile.TemporaryDirectory() as tmp:
    dst = os.path.join(tmp, "out.pth")
    with contextlib.redirect_stdout(io.StringIO()):  # the script prints one line per key
        mod.convert(SRC, dst)
    out = torch.load(dst, map_location="cpu", weights_only=False)

src_keys = list(torch.load(SRC, map_location="cpu", weights_only=False)["state_dict"].keys())
json.dump({
    "generator": "plugins/rtmdet-layout/tests/data/record_rtmdet_to_mmyolo.py",
    "converter": "mmyolo " + mmyolo.__version__ + " tools/model_converters/rtmdet_to_mmyolo.py",
    "source": "tests/fixtures/checkpoints/rtmdet_nano_mmdet.pth",
    "source_keys": src_keys,
    "output_keys": list(out["state_dict"].keys()),
    "output_meta": out.get("meta"),
}, sys.stdout, indent=1)
print()
