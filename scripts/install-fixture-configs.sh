#!/usr/bin/env bash
# Lays out .cache/fixture-configs/<pkg>: the upstream config tree of each package
# (.cache/configs/<pkg>, from fetch-config-trees.sh) plus our fixture configs
# (tests/fixtures/configs/overlay/<pkg>/mmcompat). This mirrors what the fixture generator did in
# Python (it copied the overlay into <pkg>/.mim/configs/mmcompat), so the overlay's relative
# `_base_ = '../rtmdet/...'` and `mmyolo::mmcompat/...` references resolve the same way.
# The pristine .cache/configs stays the corpus. Idempotent; re-copies the overlay every time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/fetch-config-trees.sh"
for pkg in mmdet mmyolo mmrazor; do
  dest=$root/.cache/fixture-configs/$pkg
  if [ ! -f "$dest/.complete" ]; then
    rm -rf "$dest"
    mkdir -p "$(dirname "$dest")"
    cp -r "$root/.cache/configs/$pkg" "$dest"
    touch "$dest/.complete"
  fi
  if [ -d "$root/tests/fixtures/configs/overlay/$pkg" ]; then
    cp -r "$root/tests/fixtures/configs/overlay/$pkg/." "$dest/"
  fi
done
