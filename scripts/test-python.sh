#!/usr/bin/env bash
# `make test-python`: builds the Python wheel (bindings/, maturin, dev profile), installs it into a
# venv and runs bindings/tests with pytest against the committed fixtures.
#
# No second torch: the venv sees the torch==2.11.0 that scripts/setup-libtorch.sh installed into
# .libtorch/ (a .pth line), which is also the libtorch cargo links, so the wheel's
# `import mmcompat` finds libtorch exactly as in a user's venv (bindings/python/mmcompat/__init__.py).
# A user's own LIBTORCH is used instead when exported (then no .pth line is written).
# No second dependency build: the wheel builds in the workspace's target/ with the dev profile,
# sharing every artifact `cargo test --workspace` built (bindings/ is a workspace member).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=${PYVENV:-$root/target/pyvenv}
py=$venv/bin/python
# Pinned: what the tests were written against.
reqs=(maturin==1.16.0 numpy==2.4.6 pytest==9.2.0 pillow==13.0.0)

if [ ! -x "$py" ] || ! "$py" -c 'import maturin, numpy, pytest, PIL' 2>/dev/null; then
  echo "test-python: creating $venv (maturin, numpy, pytest, pillow)" >&2
  python3 -m venv "$venv"
  "$py" -m pip install -q --no-cache-dir --disable-pip-version-check --retries 10 --timeout 60 "${reqs[@]}"
fi
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -z "${LIBTORCH:-}" ]; then
  ./scripts/setup-libtorch.sh
  echo "$root/.libtorch" > "$site/mmcompat-dev-libtorch.pth"
else
  rm -f "$site/mmcompat-dev-libtorch.pth"
fi

cargo=${CARGO:-cargo}
# The wheel reuses `cargo test --workspace`'s artifacts only while the feature pins in
# bindings/Cargo.toml match what the workspace turns on; say so when they drift.
features() { "$cargo" tree "$@" -f '{p} [{f}]' --prefix none 2>/dev/null | sed 's/ (\*)//' | sort -u; }
drift=$(comm -13 <(features --workspace -e normal,build,dev) <(features -p mmcompat-python -e normal,build) || true)
if [ -n "$drift" ]; then
  echo "test-python: warning: the wheel build has other features than the workspace's for these crates, so it recompiles them and what depends on them; add them to the feature pins in bindings/Cargo.toml:" >&2
  echo "$drift" >&2
fi
# The CLI the tests compare with, built the way `cargo test --workspace` builds it (the same
# artifacts: nothing to do after it; `cargo build --bin` alone would resolve other features).
"$cargo" test --quiet --workspace --no-run
t0=$SECONDS
rm -rf target/wheels/mmcompat-*.whl
# --strip: the dev build's line tables are ~100 MB of the library; the wheel need not carry them.
"$venv/bin/maturin" build --quiet --strip -m bindings/Cargo.toml --profile dev -o target/wheels
"$py" -m pip install -q --no-deps --force-reinstall --disable-pip-version-check target/wheels/mmcompat-*.whl
echo "test-python: wheel built and installed in $((SECONDS - t0)) s" >&2
# Out of the source tree, so that `import mmcompat` is the installed wheel.
cd "$root/bindings/tests"
t0=$SECONDS
MMCOMPAT_BIN=${MMCOMPAT_BIN:-$root/target/debug/mmcompat} "$py" -m pytest -q -p no:cacheprovider .
echo "test-python: pytest in $((SECONDS - t0)) s; the whole target in $SECONDS s" >&2
