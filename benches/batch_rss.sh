#!/usr/bin/env bash
# Memory of a long batch run (BENCHMARKS.md "## Batch runs: memory over 100,000 images"):
# `mmcompat detect --list` over N entries (default 100,000) of small images, with the 64x64
# benchmark config (benches/configs/rtmdet_nano_64.py) so the loop, not the network, dominates;
# JSON records to an --output file. VmRSS of the process is sampled from /proc every second
# together with the number of records written; prints RSS after the first 1% of the images, at
# the middle and at the end, the peak (VmHWM), and images/s.
#
# Usage: benches/batch_rss.sh [N] [BIN]   (BIN default: target/release/mmcompat, else
#        target/debug/mmcompat; needs scripts/install-fixture-configs.sh run, as `make test` does)
# Runs at nice 15 (the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
BIN=${2:-}
if [ -z "$BIN" ]; then
    BIN=target/release/mmcompat
    [ -x "$BIN" ] || BIN=target/debug/mmcompat
fi
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
ROOTS=.cache/fixture-configs
[ -e "$ROOTS/mmyolo/.complete" ] || { echo "run scripts/install-fixture-configs.sh first" >&2; exit 1; }
WORK=target/batch_rss
rm -rf "$WORK" && mkdir -p "$WORK"

# The list: the small fixture images of several formats, cycled to N entries.
mapfile -t IMAGES < <(ls tests/fixtures/image_formats/{jpeg_q95.jpg,jpeg_gray.jpg,png_rgb.png,png_palette.png,webp_lossy.webp,bmp_24.bmp,size_24x24.png,tiff_rgb.tif})
for ((i = 0; i < N; i++)); do echo "${IMAGES[i % ${#IMAGES[@]}]}"; done > "$WORK/list.txt"

start=$(date +%s.%N)
# One libtorch/OpenMP thread: on a 64x64 input, OpenMP workers spin-waiting on a shared 2-core
# machine cost 3x the work itself (perf: 65% in libgomp with 2 threads).
OMP_NUM_THREADS=1 nice -n 15 "$BIN" detect --config benches/configs/rtmdet_nano_64.py \
    --weights tests/fixtures/checkpoints/rtmdet_nano_mmyolo.pth \
    --config-root "mmyolo=$ROOTS/mmyolo" --config-root "mmdet=$ROOTS/mmdet" \
    --list "$WORK/list.txt" --output "$WORK/out.jsonl" > /dev/null 2> "$WORK/stderr" &
pid=$!
echo -e "seconds\trecords\tvmrss_kib" > "$WORK/samples.tsv"
while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$hwm" ] && echo "$hwm" > "$WORK/vmhwm"
    records=$({ wc -l < "$WORK/out.jsonl"; } 2>/dev/null || echo 0)
    [ -n "$rss" ] && echo -e "$(echo "$(date +%s.%N) - $start" | bc)\t$records\t$rss" >> "$WORK/samples.tsv"
    sleep 1
done
wait "$pid" || { echo "detect failed:" >&2; tail -5 "$WORK/stderr" >&2; exit 1; }
end=$(date +%s.%N)
records=$(wc -l < "$WORK/out.jsonl")
[ "$records" -eq "$N" ] || { echo "expected $N records, got $records" >&2; exit 1; }
# RSS at the first sample with >= 1%, >= 50% and the last sample.
awk -v n="$N" -v hwm="$(cat "$WORK/vmhwm")" -v secs="$(echo "$end - $start" | bc)" '
    NR > 1 { if (!a && $2 >= n / 100) a = $3; if (!m && $2 >= n / 2) m = $3; last = $3; lr = $2 }
    END {
        printf "machine: load %s\n", "'"$(cut -d' ' -f1-3 /proc/loadavg)"'"
        printf "images: %d in %.1f s = %.0f images/s\n", n, secs, n / secs
        printf "VmRSS after 1%%: %.1f MiB, at 50%%: %.1f MiB, last sample (%d records): %.1f MiB; peak VmHWM %.1f MiB\n",
            a / 1024, m / 1024, lr, last / 1024, hwm / 1024
    }' "$WORK/samples.tsv"
