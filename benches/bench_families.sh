#!/usr/bin/env bash
# Per-family detection benchmark (BENCHMARKS.md "## Families"), both sides on the same machine,
# the same fixture checkpoint and image: (a) cold start to first detection (median of RUNS fresh
# processes, peak RSS), (b) steady state per image (median of 30 after warm-up) with our split
# into forward and post-processing. Python: init_detector + inference_detector (mmyolo 0.6.0 in
# .venv-fixtures); Rust: the release build of examples/detect_distilled (= `mmcompat detect`).
#
# Usage: benches/bench_families.sh [RUNS]   (needs .venv-fixtures, see tests/fixtures/README.md, and
#        `cargo build --release --example detect_distilled`; BIN=... to use another build)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
PY=.venv-fixtures/bin/python
SITE=$($PY -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
IMG=tests/fixtures/inference/images/astronaut.png   # 512x512 -> 640x640 network input
BIN=${BIN:-target/release/examples/detect_distilled}
ROOTS="mmyolo=$SITE/mmyolo/.mim/configs mmrazor=$SITE/mmrazor/.mim/configs mmdet=$SITE/mmdet/.mim/configs"
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 PYTHONWARNINGS=ignore
[ -x "$BIN" ] || { echo "build first: cargo build --release --example detect_distilled" >&2; exit 1; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s | %-22s | %-22s | %-40s | %s\n' family "cold py s (MiB)" "cold rs s (MiB)" \
    "steady py ms (fwd/post)" "steady rs ms (fwd/post)"
for fam in rtmdet yolov5 yolov6 yolov8 yolox; do
    CFG=$SITE/mmyolo/.mim/configs/mmcompat/${fam}_nano_mmyolo.py
    CKPT=tests/fixtures/checkpoints/${fam}_nano_mmyolo.pth
    read -r py_cold py_rss < <(python3 benches/python/measure.py "$RUNS" \
        $PY benches/python/detect_bench.py cold "$CFG" "$CKPT" "$IMG")
    # shellcheck disable=SC2086
    read -r rs_cold rs_rss < <(python3 benches/python/measure.py "$RUNS" $BIN "$CFG" "$CKPT" "$IMG" cpu $ROOTS)
    py_steady=$($PY benches/python/detect_bench.py steady "$CFG" "$CKPT" "$IMG" 30 2>/dev/null | tail -n 1 |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f (%.1f/%.1f)" % (d["median_ms"], d["forward_median_ms"], d["postprocess_median_ms"]))')
    # shellcheck disable=SC2086
    rs_steady=$(MMCOMPAT_REPEAT=30 $BIN "$CFG" "$CKPT" "$IMG" cpu $ROOTS 2>/dev/null | grep steady_median |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f (%.1f/%.1f)" % (d["steady_median_ms"], d["forward_median_ms"], d["postprocess_median_ms"]))')
    printf '%-8s | %-22s | %-22s | %-40s | %s\n' "$fam" "$py_cold ($py_rss)" "$rs_cold ($rs_rss)" \
        "$py_steady" "$rs_steady"
done
