"""Regenerates registry/src/scoped/upstream_names.json (embedded in the core with include_str!)
from tests/fixtures/registries.json, which the fixture generator dumps from the REAL installed
mmengine/mmcv/mmdet/mmyolo/mmrazor (tests/fixtures/generate/dump_registries.py).

Run: python3 registry/src/scoped/make_upstream_names.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SRC = os.path.join(ROOT, "tests", "fixtures", "registries.json")
DST = os.path.join(HERE, "upstream_names.json")

with open(SRC) as f:
    dump = json.load(f)

kinds = {}
for reg in dump["registries"].values():
    # mmengine's registry names ("task util") → our kind identifiers ("task_util").
    kind = reg["registry_name"].replace(" ", "_")
    scopes = kinds.setdefault(kind, {})
    for scope, node in reg["scopes"].items():
        scopes[scope] = sorted(set(node.get("names", [])))

versions = ", ".join(f"{k} {v}" for k, v in dump["versions"].items())
out = {"source": f"tests/fixtures/registries.json ({versions})", "kinds": kinds}
with open(DST, "w") as f:
    json.dump(out, f, indent=0, sort_keys=True)
    f.write("\n")
print(f"wrote {DST}: " + ", ".join(f"{k}: {sum(map(len, s.values()))} names" for k, s in kinds.items()))
