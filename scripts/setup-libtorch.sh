#!/usr/bin/env bash
# Installs libtorch 2.11.0 (the torch==2.11.0 wheel from PyPI) into .libtorch/ when it is missing.
# Idempotent and quick when already there. The light CPU install: torch without its Python deps,
# plus the two CUDA runtime libraries that libtorch_cpu.so itself needs (libcudart, libcupti).
# --no-cache-dir: the wheel is ~900 MB; keeping a second copy in pip's cache doubled the disk this needs
# (a CI run once died here with "No space left on device").
# A user's own libtorch (CUDA, say) is used instead when LIBTORCH is exported before building.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/.libtorch
stamp=$dest/.mmcompat-torch-2.11.0
if [ -n "${LIBTORCH:-}" ]; then
  echo "setup-libtorch: using LIBTORCH=$LIBTORCH" >&2
  exit 0
fi
if [ -f "$stamp" ] && [ -f "$dest/torch/lib/libtorch_cpu.so" ]; then exit 0; fi
echo "setup-libtorch: installing torch==2.11.0 from PyPI into $dest (once, ~1.2 GB)" >&2
rm -rf "$dest"
python3 -m pip install -q --no-cache-dir --disable-pip-version-check --retries 10 --timeout 60 --no-deps --target "$dest" \
  torch==2.11.0 'nvidia-cuda-runtime==13.0.96.*' 'nvidia-cuda-cupti==13.0.85.*'
touch "$stamp"
