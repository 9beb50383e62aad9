#!/usr/bin/env bash
# Seeds the fuzz corpora from the repository's fixtures (run once before the first fuzzing;
# the committed fuzz/corpus/<target> are the minimised results, see FUZZING.md). Usage:
#   fuzz/seed.sh OUT_DIR        # writes OUT_DIR/<target>/...
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: fuzz/seed.sh OUT_DIR}
py=.venv-fixtures/bin/python
d=registry/tests/data/checkpoints
mkdir -p "$out"/{checkpoint_zip,checkpoint_legacy,safetensors,pickle,config_py,config_toml,adapter_toml,module_tree}
cp $d/torch_zip.pth $d/torch_zip_proto4.pth $d/written_by_mmcompat.pth "$out/checkpoint_zip/"
cp $d/torch_legacy.pth "$out/checkpoint_legacy/"
cp $d/written_by_mmcompat.safetensors "$out/safetensors/"
# Pickles: the object pickle of each zip fixture (mode byte 1 = zip persistent ids), and plain
# pickles of every protocol (mode byte 0) made by the real pickle module.
"$py" - "$out/pickle" "$d" <<'PY'
import collections, pickle, sys, zipfile, pathlib
out, d = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for f in ["torch_zip.pth", "torch_zip_proto4.pth", "written_by_mmcompat.pth"]:
    z = zipfile.ZipFile(d / f)
    name = next(n for n in z.namelist() if n.endswith("data.pkl"))
    (out / f"{f}.pkl").write_bytes(b"\x01" + z.read(name))
obj = {"meta": {"epoch": 3, "hook_msgs": {"best": 0.5}}, "t": (1, 2.5, "x", None, True, b"by"),
       "od": collections.OrderedDict(a=[1, 2**70, -1]), "s": {1, 2}, "f": frozenset([3])}
for proto in range(6):
    (out / f"plain_p{proto}.pkl").write_bytes(b"\x00" + pickle.dumps(obj, protocol=proto))
PY
cp tests/fixtures/config-corpus/cases/*.py tests/fixtures/config-corpus/cases/errors/*.py "$out/config_py/"
# A spread of real configs (they name bases that are absent in the fuzz folder: the
# evaluator still runs up to the first use of `_base_`).
find .cache/configs -name '*.py' 2>/dev/null | sort | awk 'NR % 40 == 1' | while read -r f; do
    cp "$f" "$out/config_py/$(echo "$f" | tr / _)"
done
cp tests/fixtures/config-corpus/cases/equivalent.toml "$out/config_toml/"
cp examples/adapters/strip_orig_mod.toml "$out/adapter_toml/"
printf '[adapter]\nname = "t.kd"\n[adapter.detect]\ntop_level_keys = ["state_dict"]\nany_key_prefix = ["architecture."]\n[[op]]\nselect = "state_dict"\n[[op]]\ndrop = "teacher\\\\.|distiller\\\\."\nreason = "not student"\n[[op]]\nstrip_prefix = "architecture."\n[[op]]\nkeep = "backbone\\\\."\n' > "$out/adapter_toml/kd.toml"
# Pickled module trees: the object pickle of each foreign-checkpoint fixture (a whole
# Ultralytics/YOLOv5/YOLOv6/YOLOv7 model, 80-125 KB), and small ones made by the real torch.save
# (a module of the trees' shapes: Sequential/ModuleList children, None parameters, buffers,
# _non_persistent_buffers_set), small enough for the mutations to reach every branch quickly.
"$py" - "$out/module_tree" tests/fixtures/foreign/*.pt tests/fixtures/ultralytics/*.pt <<'PY'
import io, pathlib, sys, zipfile
import torch
from torch import nn
out = pathlib.Path(sys.argv[1])
for f in sys.argv[2:]:
    z = zipfile.ZipFile(f)
    name = next(n for n in z.namelist() if n.endswith("data.pkl"))
    (out / (pathlib.Path(f).stem + ".pkl")).write_bytes(z.read(name))
class Detect(nn.Module):
    def __init__(self):
        super().__init__()
        self.m = nn.ModuleList([nn.Conv2d(2, 3, 1), nn.Conv2d(2, 3, 1, bias=False)])
        self.register_buffer("anchors", torch.zeros(1, 2))
        self.register_buffer("scratch", torch.ones(1), persistent=False)
        self.register_parameter("unused", None)
        self.stride = torch.tensor([8.0])
small = {
    "seq": nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.SiLU()),
    "detect": nn.Sequential(nn.Conv2d(1, 2, 3), Detect()),
}
for key, m in small.items():
    for wrap in ("bare", "ckpt"):
        buf = io.BytesIO()
        torch.save(m if wrap == "bare" else {"model": m, "ema": None, "epoch": -1}, buf)
        z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
        name = next(n for n in z.namelist() if n.endswith("data.pkl"))
        (out / f"torch_save_{key}_{wrap}.pkl").write_bytes(z.read(name))
PY
echo "seeded $out: $(find "$out" -type f | wc -l) files"
