#!/usr/bin/env bash
# Detection benchmark, both sides on the same machine and the same image (BENCHMARKS.md
# "## Detection"): (a) cold start to first detection, (b) steady-state per-image latency (median,
# after warm-up), (c) peak RSS. Python: init_detector + inference_detector, and DetInferencer with
# the KD config; Rust: the release build of examples/detect_distilled (same code path as
# `mmcompat detect`: Inferencer::builder() ... infer()).
#
# Usage: benches/bench_detect.sh [RUNS]   (needs .venv-fixtures with shims installed, and
#        `cargo build --release --example detect_distilled`)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
PY=.venv-fixtures/bin/python
SITE=$($PY -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
CFG=$SITE/mmyolo/.mim/configs/mmcompat/rtmdet_nano_mmyolo.py
KD_CFG=$SITE/mmyolo/.mim/configs/mmcompat/kd_nano_rtmdet_neck.py
CKPT=tests/fixtures/checkpoints/rtmdet_nano_mmyolo.pth
KD_CKPT=tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth
IMG=tests/fixtures/inference/images/astronaut.png   # 512x512 -> 640x640 network input
BIN=target/release/examples/detect_distilled
ROOTS="mmyolo=$SITE/mmyolo/.mim/configs mmrazor=$SITE/mmrazor/.mim/configs mmdet=$SITE/mmdet/.mim/configs"
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 PYTHONWARNINGS=ignore
[ -x "$BIN" ] || { echo "build first: cargo build --release --example detect_distilled" >&2; exit 1; }

# Median wall time (s) and largest peak RSS (MiB) of RUNS fresh processes (benches/python/measure.py).
measure() {
    python3 benches/python/measure.py "$RUNS" "$@"
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== (a) cold start to first detection, median of $RUNS fresh processes (wall s, peak RSS MiB)"
read -r py_cold py_rss < <(measure $PY benches/python/detect_bench.py cold "$CFG" "$CKPT" "$IMG")
read -r kd_cold kd_rss < <(measure $PY benches/python/detect_bench.py kd "$KD_CFG" "$KD_CKPT" "$IMG")
# shellcheck disable=SC2086
read -r rs_cold rs_rss < <(measure $BIN "$CFG" "$CKPT" "$IMG" cpu $ROOTS)
# shellcheck disable=SC2086
read -r rs_kd_cold rs_kd_rss < <(measure $BIN "$KD_CFG" "$KD_CKPT" "$IMG" cpu $ROOTS)
echo "python init_detector+inference_detector: $py_cold s, $py_rss MiB"
echo "python DetInferencer (KD config, teacher built): $kd_cold s, $kd_rss MiB"
echo "mmcompat (plain config): $rs_cold s, $rs_rss MiB"
echo "mmcompat (KD config + KD checkpoint, student only): $rs_kd_cold s, $rs_kd_rss MiB"

echo "== (b) steady state, median per image after warm-up"
$PY benches/python/detect_bench.py steady "$CFG" "$CKPT" "$IMG" 30 2>/dev/null
# shellcheck disable=SC2086
MMCOMPAT_REPEAT=30 $BIN "$CFG" "$CKPT" "$IMG" cpu $ROOTS 2>/dev/null | grep steady_median
# shellcheck disable=SC2086
MMCOMPAT_REPEAT=30 $BIN "$KD_CFG" "$KD_CKPT" "$IMG" cpu $ROOTS 2>/dev/null | grep steady_median
