"""Reference values for bindings/tests/test_mmcompat.py, made with the real torch (2.11.0).

Run with the fixture venv (tests/fixtures/generate/, the real upstream packages):
    .venv-fixtures/bin/python bindings/tests/generate_fixtures.py

Writes into bindings/tests/fixtures/:
* demo_state_dict.json: what ``torch.load`` reads from the bundled demo checkpoint's
  ``state_dict``: every name, shape, dtype, and the float64 sum and sum of |x| of its values;
* dtypes.pth (torch.save, zip format) + dtypes.json: one tensor per dtype torch.save writes
  (float16, bfloat16 and a strided view included) and its values as torch gives them
  (``tolist()``; bfloat16 through ``.float()``, which is exact).
"""

import json
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "fixtures")


def demo_state_dict():
    path = os.path.join(REPO, "tests/fixtures/demo/demo_shapes_kd_rtmdet.pth")
    # weights_only=False: the trusted file carries mmengine's message-hub objects; this is the
    # reference side, the code under test reads it with its own restricted unpickler.
    ck = torch.load(path, map_location="cpu", weights_only=False)
    out = {}
    for name, t in ck["state_dict"].items():
        d = t.detach().double()
        out[name] = {
            "shape": list(t.shape),
            "dtype": str(t.dtype).replace("torch.", ""),
            "sum": d.sum().item(),
            "abs_sum": d.abs().sum().item(),
        }
    with open(os.path.join(OUT, "demo_state_dict.json"), "w") as f:
        json.dump(out, f, sort_keys=True, separators=(",", ":"))


def dtypes():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 4, generator=g) * 10
    sd = {
        "f32": base.clone(),
        "f16": base.half(),
        "bf16": base.bfloat16(),
        "f64": base.double(),
        "i64": base.long(),
        "i32": base.int(),
        "i16": base.short(),
        "i8": base.to(torch.int8),
        "u8": base.abs().to(torch.uint8),
        "bool": base > 0,
        # A non-contiguous view: saved as its storage + strides; read back in C order.
        "strided": base.t(),
    }
    torch.save({"state_dict": sd, "meta": {"note": "mmcompat bindings fixture"}},
               os.path.join(OUT, "dtypes.pth"))
    ref = {}
    for k, t in sd.items():
        v = t.float() if t.dtype == torch.bfloat16 else t
        ref[k] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                  "values": v.tolist()}
    with open(os.path.join(OUT, "dtypes.json"), "w") as f:
        json.dump(ref, f, indent=0, sort_keys=True)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    demo_state_dict()
    dtypes()
