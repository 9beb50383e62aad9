#!/usr/bin/env bash
# Every benchmark, side by side with the Python path on this machine (results: BENCHMARKS.md).
# Needs the fixture Python environment (tests/fixtures/generate/setup-env.sh builds it from PyPI).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tests/fixtures/generate/setup-env.sh
py=.venv-fixtures/bin/python
# Checkpoint reading: big real RTMDet checkpoints written into /tmp (not committed).
$py benches/python/make_big_checkpoint.py
cargo bench -p mmcompat-registry --bench checkpoint
cargo build --release -p mmcompat-registry --example ckpt_rss
$py benches/python/torch_load_bench.py --ours target/release/examples/ckpt_rss \
  tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth /tmp/mmcompat-bench/*.pth
# Config loading: the whole mmdet/mmyolo/mmrazor corpus.
cargo bench -p mmcompat-registry --bench config
$py benches/python/config_bench.py
# Detection: cold start, steady state, peak RSS.
cargo build --release --example detect_distilled
benches/bench_detect.sh
# Per family (RTMDet, YOLOv5, YOLOv6, YOLOv8 fixtures).
benches/bench_families.sh
