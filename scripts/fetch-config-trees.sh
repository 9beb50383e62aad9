#!/usr/bin/env bash
# Fetches the config corpus for `cargo test -p mmcompat-registry` (registry/tests/config.rs):
# the mmdet 3.3.0, mmyolo 0.6.0 and mmrazor 1.0.0 wheels (pip download --no-deps, a few MB) into
# .cache/wheels, and their `<pkg>/.mim/configs` trees unzipped into .cache/configs/<pkg>, with the
# package's `.mim/model-index.yml` beside them (.cache/configs/<pkg>/model-index.yml: the index of
# metafiles that `mmcompat detect --model NAME` resolves names through). These trees are also the
# config roots every command uses when no --config-root is given (registry/src/config/roots.rs).
# Idempotent and quick when already present. .cache is git-ignored.
# Needs: python3 with pip (for the download) — or the wheels already in .cache/wheels.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
wheels=$root/.cache/wheels
configs=$root/.cache/configs
mkdir -p "$wheels" "$configs"

specs=("mmdet==3.3.0" "mmyolo==0.6.0" "mmrazor==1.0.0")
for spec in "${specs[@]}"; do
  pkg=${spec%%==*}
  ver=${spec##*==}
  stamp=$configs/$pkg/.mmcompat-$ver
  if [ -f "$stamp" ] && [ -f "$configs/$pkg/model-index.yml" ]; then continue; fi
  wheel=$(ls "$wheels"/"$pkg"-"$ver"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    echo "downloading $spec" >&2
    python3 -m pip download -q --no-cache-dir --disable-pip-version-check --retries 10 --timeout 60 --no-deps --only-binary=:all: --dest "$wheels" "$spec"
    wheel=$(ls "$wheels"/"$pkg"-"$ver"-*.whl | head -n1)
  fi
  if [ -f "$stamp" ]; then
    # Trees fetched before the index was kept: add the index alone (the tree may be in use).
    only_index=1
  else
    only_index=0
    rm -rf "$configs/$pkg"
    mkdir -p "$configs/$pkg"
  fi
  # Unzip only <pkg>/.mim/configs/** and strip that prefix (python's zipfile: no unzip needed).
  python3 - "$wheel" "$pkg" "$configs/$pkg" "$only_index" <<'EOF'
import os, sys, zipfile
wheel, pkg, dest, only_index = sys.argv[1:]
prefix = f"{pkg}/.mim/configs/"
index = f"{pkg}/.mim/model-index.yml"
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.filename == index:
            rel = "model-index.yml"
        elif only_index == "1" or not info.filename.startswith(prefix) or info.is_dir():
            continue
        else:
            rel = info.filename[len(prefix):]
        if ".." in rel.split("/"):
            continue
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            dst.write(src.read())
        n += 1
print(f"{pkg}: {n} files", file=sys.stderr)
EOF
  touch "$stamp"
done
