#!/usr/bin/env bash
# Prints FUZZING.md's table from the run logs (fuzz/run_all.sh writes them to $FUZZ_LOGS,
# default /tmp/fuzz-logs): executions, coverage (libFuzzer's `cov:` edges and `ft:` features
# of the last status line), corpus size, crashes.
cd "$(dirname "$0")"
logs=${FUZZ_LOGS:-/tmp/fuzz-logs}
echo "| target | executions | time (s) | cov (edges) | ft (features) | corpus files (committed) | crashes/hangs/OOMs |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for f in "$logs"/*.log; do
    t=$(basename "$f" .log)
    case $t in *.merge|build|install-*) continue ;; esac
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$f" | tail -1 | grep -o '[0-9]*$')
    [ -z "$execs" ] && execs="$(grep -oE '^#[0-9]+' "$f" | tail -1 | tr -d '#') (running)"
    secs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$f" | tail -1 | grep -oE '[0-9]+ second' | grep -oE '[0-9]+')
    last=$(grep -E '^#[0-9]+' "$f" | tail -1)
    cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+')
    ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | grep -oE '[0-9]+')
    files=$(find "corpus/$t" -type f 2>/dev/null | wc -l)
    crashes=$(grep -cE 'ERROR: libFuzzer|ERROR: AddressSanitizer|==[0-9]+== ERROR|panicked at|Test unit written' "$f")
    echo "| $t | $execs | ${secs:-?} | ${cov:-?} | ${ft:-?} | $files | $crashes |"
done
