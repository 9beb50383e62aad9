"""Records how the REAL mmengine 0.10.7 Registry resolves type names, for registry/tests/scoped.rs.

Run: /work/main/.venv-fixtures/bin/python registry/tests/data/registry_semantics.py > registry/tests/data/registry_semantics.json

It builds toy registry trees with mmengine's own `Registry` class, shaped like OpenMMLab's:
root scope `mmengine` with children `mmdet`, `mmyolo`, `mmrazor` (siblings, as in mmdet/registry.py,
mmyolo/registry.py, mmrazor/registry/registry.py), registers one class per (scope, name) listed in
REGISTERED, then records (a) `Registry.get(key)` called on each scope's node and (b) nested
`build_from_cfg` under a default scope with `_scope_` overrides, i.e. which scope each `type` was
found in. Only pure-Python mmengine code runs (no model code is imported: lazy imports are
disabled by marking every node as already imported).
"""
import json
import sys

from mmengine.registry import DefaultScope, Registry

SCOPES = ["mmengine", "mmdet", "mmyolo", "mmrazor"]
# (kind, scope, name) — names chosen from the real packages so the cases read like real configs.
REGISTERED = [
    ("model", "mmengine", "BaseDataPreprocessor"),
    ("model", "mmdet", "CSPNeXt"),
    ("model", "mmyolo", "CSPNeXt"),
    ("model", "mmdet", "RTMDet"),
    ("model", "mmdet", "QualityFocalLoss"),
    ("model", "mmyolo", "YOLODetector"),
    ("model", "mmyolo", "CSPNeXtPAFPN"),
    ("model", "mmdet", "CSPNeXtPAFPN"),
    ("model", "mmrazor", "FpnTeacherDistill"),
    ("model", "mmrazor", "ConfigurableDistiller"),
    ("transform", "mmengine", "LoadImageFromFile"),
    ("transform", "mmdet", "PackDetInputs"),
    ("transform", "mmyolo", "YOLOv5KeepRatioResize"),
    ("transform", "mmyolo", "LetterResize"),
]


def make_trees():
    trees = {}
    for kind in sorted({k for k, _, _ in REGISTERED}):
        root = Registry(kind, scope="mmengine")
        nodes = {"mmengine": root}
        for s in SCOPES[1:]:
            nodes[s] = Registry(kind, parent=root, scope=s)
        for node in nodes.values():
            node._imported = True  # no lazy import of the real packages' model code
        trees[kind] = nodes
    return trees


TREES = make_trees()


def make_class(kind, scope, name):
    def __init__(self, **kwargs):
        self.scope = scope
        self.name = name
        self.children = {}
        for k, v in kwargs.items():
            if isinstance(v, dict) and "type" in v:
                # Like mmdet code calling mmdet.registry.MODELS.build(cfg): the node called is
                # the class's own package node; mmengine switches to the default scope's node.
                self.children[k] = TREES[kind][scope].build(v)

    return type(name, (), {"__init__": __init__})


for kind, scope, name in REGISTERED:
    TREES[kind][scope].register_module(name=name, module=make_class(kind, scope, name))

KEYS = sorted({n for _, _, n in REGISTERED}) + ["Nope", "mmdet.Nope", "torchvision.Foo"]
KEYS += [f"{s}.{n}" for _, s, n in REGISTERED]
KEYS += ["mmdet.LoadImageFromFile", "mmyolo.PackDetInputs", "mmengine.CSPNeXt", "mmdet.mmyolo.CSPNeXt"]
KEYS = sorted(set(KEYS))

def _origin(kind, cls):
    for s, node in TREES[kind].items():
        if cls in node._module_dict.values():
            return s
    return "<python path fallback>"


lookup_cases = []
for kind, nodes in TREES.items():
    for current in SCOPES:
        for key in KEYS:
            obj = nodes[current].get(key)
            lookup_cases.append({"kind": kind, "current": current, "key": key,
                                 "found_in": None if obj is None else _origin(kind, obj)})


def walk(obj, path, out):
    out.append({"path": path, "type": obj.name, "found_in": obj.scope})
    for k, child in obj.children.items():
        walk(child, f"{path}.{k}", out)


BUILD_CASES = [
    # default scope mmyolo, mmyolo detector with an mmdet-prefixed child: nested builds of the
    # prefixed child still run under the unchanged default scope (behaviour.md §1.4).
    ("mmyolo", {"type": "YOLODetector",
                "backbone": {"type": "CSPNeXt"},
                "neck": {"type": "mmdet.CSPNeXtPAFPN", "inner": {"type": "CSPNeXt"}}}),
    # `_scope_` switches the scope for the whole subtree.
    ("mmyolo", {"type": "YOLODetector",
                "neck": {"type": "CSPNeXtPAFPN", "_scope_": "mmdet", "inner": {"type": "CSPNeXt"}}}),
    # mmrazor distill config: model dict carries _scope_='mmrazor'; the architecture has its own
    # _scope_='mmyolo' (what cfg_path configs produce), teacher _scope_='mmdet'.
    ("mmdet", {"type": "FpnTeacherDistill", "_scope_": "mmrazor",
               "architecture": {"type": "YOLODetector", "_scope_": "mmyolo", "backbone": {"type": "CSPNeXt"}},
               "teacher": {"type": "RTMDet", "_scope_": "mmdet", "backbone": {"type": "CSPNeXt"}},
               "distiller": {"type": "ConfigurableDistiller"}}),
    # an explicit caller scope (DetInferencer(scope='mmyolo') = init_default_scope) does not beat
    # a `_scope_` inside the dict: the dict's scope wins for its subtree.
    ("mmyolo", {"type": "FpnTeacherDistill", "_scope_": "mmrazor",
                "distiller": {"type": "ConfigurableDistiller"}}),
    # mmengine root types are reachable from every scope through the parent walk.
    ("mmyolo", {"type": "YOLODetector", "data_preprocessor": {"type": "BaseDataPreprocessor"}}),
]

build_cases = []
for default_scope, cfg in BUILD_CASES:
    name = f"case-{len(build_cases)}"
    DefaultScope.get_instance(name, scope_name=default_scope)
    root_obj = TREES["model"]["mmengine"].build(json.loads(json.dumps(cfg)))
    out = []
    walk(root_obj, "model", out)
    build_cases.append({"default_scope": default_scope, "cfg": cfg, "resolved": out})

json.dump({"generator": "registry/tests/data/registry_semantics.py",
           "mmengine_version": __import__("mmengine").__version__,
           "registered": [{"kind": k, "scope": s, "name": n} for k, s, n in REGISTERED],
           "lookup_cases": lookup_cases, "build_cases": build_cases},
          sys.stdout, indent=1)
print()
