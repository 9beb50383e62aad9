#!/usr/bin/env bash
# ONNX export latency (BENCHMARKS.md "## ONNX export"): the mmyolo RTMDet nano fixture, one 640x640
# network input, CPU, 2 threads everywhere, same machine, back to back: onnxruntime on our export
# (raw outputs; end-to-end with decoding + NMS in the graph), our tch path (release
# examples/detect_distilled: forward + post-processing split) and Python (mmyolo's model:
# forward + predict_by_feat split, benches/python/detect_bench.py).
#
# Usage: benches/bench_onnx.sh   (needs .venv-fixtures with onnxruntime, shims installed, and
#        `cargo build --release --example detect_distilled`; CLI=... the mmcompat binary that
#        exports, default target/debug/mmcompat)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv-fixtures/bin/python
SITE=$($PY -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
CFG=$SITE/mmyolo/.mim/configs/mmcompat/rtmdet_nano_mmyolo.py
CKPT=tests/fixtures/checkpoints/rtmdet_nano_mmyolo.pth
IMG=tests/fixtures/inference/images/astronaut.png
BIN=target/release/examples/detect_distilled
ROOTS="mmyolo=$SITE/mmyolo/.mim/configs mmrazor=$SITE/mmrazor/.mim/configs mmdet=$SITE/mmdet/.mim/configs"
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 PYTHONWARNINGS=ignore
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
# The exports, as a user writes them (BN folded; raw, then decoding + NMS in the graph).
CLI=${CLI:-target/debug/mmcompat}
[ -x "$CLI" ] || cargo build -q --bin mmcompat
for stem in mmyolo mmyolo_end2end; do
    extra=()
    [ "$stem" = mmyolo_end2end ] && extra=(--end2end)
    # shellcheck disable=SC2086
    "$CLI" export --config "$CFG" --weights "$CKPT" --format onnx "${extra[@]}" -o "$DIR/$stem.onnx" \
        $(for r in $ROOTS; do echo --config-root "$r"; done) >/dev/null
done
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "onnxruntime: $($PY benches/python/onnx_bench.py "$DIR" 30)"
# shellcheck disable=SC2086
[ -x "$BIN" ] && echo "mmcompat tch: $(MMCOMPAT_REPEAT=30 $BIN "$CFG" "$CKPT" "$IMG" cpu $ROOTS 2>/dev/null | grep steady_median)"
echo "python: $($PY benches/python/detect_bench.py steady "$CFG" "$CKPT" "$IMG" 30 2>/dev/null)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
