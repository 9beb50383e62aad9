#!/usr/bin/env bash
# examples/ray/run_local.sh: the Ray examples on a local Ray cluster on this machine (issue 20).
#
# 1. The venv: `make test-python`'s (target/pyvenv: the built mmcompat wheel, and torch 2.11.0
#    through the .pth line to .libtorch, so no second torch), plus ray[data,serve]. pip may not
#    change what the tests pinned there: the venv's own versions are the constraints.
#    RAY_VENV=DIR uses another venv that already has mmcompat (and torch 2.11.0).
# 2. A temp folder with RAY_IMAGES files (default 1000): the 8 demo scenes repeated, plus one
#    PNG cut short, which must come back as an error record.
# 3. ray_data_detect.py with 1, then 2 actors (`ray.init(num_cpus=2)` in the script: a local
#    cluster, stopped at its end), each output checked by check_records.py against
#    Detector.detect image by image (no lost, duplicated or extra image; 1 error record).
# 4. ray_serve_detect.py --self-test with 1, then 2 replicas (64 requests, 4 client threads).
# Every model runs libtorch with 1 thread (OMP_NUM_THREADS=1: actors, replicas and the checks),
# so N workers use N cores; the workers run at niceness 0 (Ray's default is 15). Prints images/s,
# requests/s and the load average around each run.
# Not in CI: ~2.5-3 minutes on 2 cores, most of it Ray starting worker processes; RAY_SMOKE=1 runs
# 2 workers only on 200 images and 16 requests.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
here=examples/ray
RAY_VERSION=2.60.0
venv=${RAY_VENV:-$root/target/pyvenv}
py=$venv/bin/python
images=${RAY_IMAGES:-1000}
workers="1 2"
requests=64
if [ -n "${RAY_SMOKE:-}" ]; then
  # RAY_SMOKE=1: a quick end-to-end check (2 workers only, fewer images and requests).
  images=${RAY_IMAGES:-200} workers=2 requests=16
fi

if [ ! -x "$py" ] || ! "$py" -c 'import mmcompat' 2>/dev/null; then
  if [ -n "${RAY_VENV:-}" ]; then
    echo "run_local: $py cannot import mmcompat: pip install torch==2.11.0 and the wheel there" >&2
    exit 1
  fi
  echo "run_local: building the wheel into $venv (make test-python)" >&2
  ./scripts/test-python.sh
fi
if ! "$py" -c "import ray, sys; sys.exit(ray.__version__ != '$RAY_VERSION')" 2>/dev/null; then
  echo "run_local: installing ray[data,serve]==$RAY_VERSION into $venv" >&2
  constraints=$(mktemp)
  # Not the `name @ file://` lines (the wheel): pip cannot take those as constraints.
  "$venv/bin/pip" freeze --disable-pip-version-check | grep -v ' @ ' > "$constraints"
  "$venv/bin/pip" install -q --no-cache-dir --disable-pip-version-check --retries 10 \
    --timeout 60 -c "$constraints" "ray[data,serve]==$RAY_VERSION"
  rm -f "$constraints"
fi
if [ ! -f .cache/fixture-configs/mmyolo/mmcompat/demo_shapes_kd_rtmdet.py ]; then
  ./scripts/install-fixture-configs.sh
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/images"
scenes=(tests/fixtures/demo/scenes/*.png)
for ((i = 0; i < images; i++)); do
  s=${scenes[i % ${#scenes[@]}]}
  cp "$s" "$work/images/$(printf '%05d' "$i")_$(basename "$s")"
done
head -c 3000 "${scenes[0]}" > "$work/images/corrupt.png"

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAY_DISABLE_USAGE_STATS=1
# Ray starts its workers at niceness 15 (RAY_worker_niceness): on a machine shared with other
# work they would get what nice-0 processes leave, and the figures would measure the neighbours.
# At 0 the actors compete like the no-Ray baseline check_records.py prints.
export RAY_worker_niceness=${RAY_worker_niceness:-0}
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "run_local: $((images + 1)) images in $work/images, $(nproc --all) cores, load average $(load)"
for n in $workers; do
  echo "== Ray Data, $n actor(s); load average before: $(load)"
  "$py" $here/ray_data_detect.py "$work/images" --output "$work/out_$n.jsonl" --concurrency "$n" \
    2> "$work/data_$n.log" || { tail -30 "$work/data_$n.log" >&2; exit 1; }
  echo "   load average after: $(load)"
  "$py" $here/check_records.py "$work/images" "$work/out_$n.jsonl"
done
for n in $workers; do
  echo "== Ray Serve, $n replica(s); load average before: $(load)"
  "$py" $here/ray_serve_detect.py --self-test --replicas "$n" --requests "$requests" --clients 4 \
    2> "$work/serve_$n.log" || { tail -30 "$work/serve_$n.log" >&2; exit 1; }
  echo "   load average after: $(load)"
done
