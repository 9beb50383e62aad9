#!/usr/bin/env bash
# Runs every fuzz target in turn (one job each, nice 15), then merges what it found into the
# committed corpus (libFuzzer -merge=1 keeps only inputs that add coverage: a minimisation).
# Usage: fuzz/run_all.sh [TARGET...]   (default: all); logs in $FUZZ_LOGS (/tmp/fuzz-logs).
#   RUNS=10000000 SECONDS_PER_TARGET=7200 fuzz/run_all.sh config_py
set -uo pipefail
cd "$(dirname "$0")"
logs=${FUZZ_LOGS:-/tmp/fuzz-logs}
work=${FUZZ_WORK:-/tmp/fuzz-work}
runs=${RUNS:-10000000}
secs=${SECONDS_PER_TARGET:-7200}
mkdir -p "$logs" "$work"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(pickle safetensors checkpoint_legacy checkpoint_zip module_tree config_toml adapter_toml config_py image_decode)
# image_decode links the root crate, hence libtorch (loaded from .libtorch at run time); it runs
# without AddressSanitizer (libtorch is not built for it; the decoders' C part, mozjpeg, is not
# instrumented either way).
# SANITIZER=none runs the other targets without AddressSanitizer too: 3.7-6.6x the executions
# per second (the code they reach is safe Rust: ASan's only use there is -malloc_limit_mb, which
# needs its allocator; replay the merged corpus through an ASan build afterwards, FUZZING.md).
sanitizer=${SANITIZER:-address}
build_args() {
    case $1 in
        image_decode) echo "--features image -s none" ;;
        *) echo "-s $sanitizer" ;;
    esac
}
# shellcheck disable=SC2046
export LD_LIBRARY_PATH="$PWD/../.libtorch/torch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
dict_of() {
    case $1 in
        pickle|checkpoint_*|safetensors|module_tree) echo dict/pickle.dict ;;
        config_py) echo dict/python.dict ;;
        image_decode) echo dict/image.dict ;;
        *) echo dict/toml.dict ;;
    esac
}
# module_tree's seeds include whole 80-125 KB model pickles: mutating those runs at ~140 exec/s,
# so inputs are capped at 8 KB (the small torch.save seeds carry the mutations; the big ones are
# truncated on load).
len_of() {
    case $1 in
        module_tree) echo "-max_len=8192" ;;
        *) echo "" ;;
    esac
}
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "artifacts/$t"
    echo "== $t: $(date -u +%FT%TZ)" >"$logs/$t.log"
    # -malloc_limit_mb: a single allocation over 512 MB is a finding (the readers' own limits
    # are far below); -rss_limit_mb bounds the whole process; -timeout marks hangs (> 10 s).
    nice -n 15 cargo +nightly fuzz run -O $(build_args "$t") "$t" "$work/$t" "corpus/$t" -- $(len_of "$t") \
        -dict="$(dict_of "$t")" -runs="$runs" -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >>"$logs/$t.log" 2>&1
    echo "== exit $? $(date -u +%FT%TZ)" >>"$logs/$t.log"
    nice -n 15 cargo +nightly fuzz run -O $(build_args "$t") "$t" "corpus/$t" "$work/$t" -- -merge=1 \
        -timeout=10 -rss_limit_mb=2048 >"$logs/$t.merge.log" 2>&1
done
