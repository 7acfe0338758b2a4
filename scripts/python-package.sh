#!/usr/bin/env bash
# The `facegate` Python package: builds the wheel with maturin and installs it into a venv;
# with `test`, runs its pytest suite (real photos, and the CLI built by `cargo test --release`).
#
#   scripts/python-package.sh          # build + install into target/python-venv
#   scripts/python-package.sh test     # ... then pytest crates/facegate-python/tests
#
# FACEGATE_PY_VENV picks the venv; FACEGATE_TEST_HOME the model cache the tests use (the same
# as `cargo test`'s); FACEGATE_BIN the CLI the tests compare with.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${FACEGATE_PY_VENV:-target/python-venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# maturin builds the wheel; onnxruntime supplies ONNX Runtime's shared library on Python 3.11+
# (older Pythons fetch the pinned one, as the CLI does); pillow, pytest and mypy are for the tests.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "maturin==1.9.6" "numpy>=1.21" pillow pytest mypy \
    "onnxruntime==1.32.0; python_version >= '3.11'"

rm -f target/wheels/facegate-*.whl
"$VENV/bin/maturin" build --release --quiet -m crates/facegate-python/Cargo.toml \
    -i "$VENV/bin/python" --out target/wheels
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall \
    --no-deps target/wheels/facegate-*.whl
echo "installed: $("$VENV/bin/python" -c 'import facegate; print("facegate", facegate.__version__, facegate.__file__)')"

if [ "${1:-}" = test ]; then
    export FACEGATE_TEST_HOME=${FACEGATE_TEST_HOME:-$PWD/target/facegate-test-home}
    export FACEGATE_BIN=${FACEGATE_BIN:-$PWD/target/release/facegate}
    "$VENV/bin/python" -m pytest -q crates/facegate-python/tests
fi
