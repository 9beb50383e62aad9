"""mmengine side of the config-loading benchmark (registry/benches/config.rs is the Rust side).

Loads every `.py` config of the mmdet 3.3.0, mmyolo 0.6.0 and mmrazor 1.0.0 wheels
(.cache/configs, from scripts/fetch-config-trees.sh) with the real `mmengine.Config.fromfile`
(import_custom_modules=False, as the Rust loader) and `json.dumps(cfg.to_dict())`, failures
included, and prints the wall time and the CPU time (`time.process_time`) of the whole pass
(best of --repeat).

Usage: .venv-fixtures/bin/python benches/python/config_bench.py [--repeat N]
"""

import argparse
import json
import os
import time
import warnings

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def files():
    out = []
    for pkg in ("mmdet", "mmyolo", "mmrazor"):
        tree = os.path.join(ROOT, ".cache", "configs", pkg)
        if not os.path.isdir(tree):
            raise SystemExit(f"{tree} missing: run scripts/fetch-config-trees.sh")
        for d, _, names in os.walk(tree):
            out += [os.path.join(d, n) for n in sorted(names) if n.endswith(".py")]
    return sorted(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from mmengine.config import Config

    fs = files()
    best = best_cpu = None
    for _ in range(args.repeat):
        ok = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for f in fs:
            try:
                json.dumps(Config.fromfile(f, import_custom_modules=False).to_dict())
                ok += 1
            except Exception:  # noqa: BLE001 - failures are part of the corpus
                pass
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        best = dt if best is None else min(best, dt)
        best_cpu = dc if best_cpu is None else min(best_cpu, dc)
    print(json.dumps({"files": len(fs), "loaded": ok, "seconds": round(best, 3),
                      "cpu_seconds": round(best_cpu, 3)}))


if __name__ == "__main__":
    main()
