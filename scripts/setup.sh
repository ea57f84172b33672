#!/usr/bin/env bash
# Sets up a fresh machine for fptt-ext: a virtual environment in .venv with the
# package and its pinned dependencies, and the Fashion-MNIST files from Debian.
# Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import fptt_ext, pytest" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.fptt-installed ] || [ constraints.txt -nt .venv/.fptt-installed ]; then
    echo "[setup] installing fptt-ext and its dependencies (first time: a few minutes)"
    .venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
    touch .venv/.fptt-installed
fi

# Where fptt_ext looks for Fashion-MNIST: FPTT_EXT_DATA (itself or its fashion-mnist/), then Debian's
# package. A FPTT_EXT_DATA without the files does not stand in for them.
have_fashion_mnist() {
    for d in ${FPTT_EXT_DATA:+"$FPTT_EXT_DATA/fashion-mnist" "$FPTT_EXT_DATA"} /usr/share/datasets/fashion-mnist; do
        [ -f "$d/t10k-labels-idx1-ubyte.gz" ] && return 0
    done
    return 1
}
if ! have_fashion_mnist; then
    echo "[setup] installing the Fashion-MNIST dataset (Debian package dataset-fashion-mnist)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist; } >/dev/null; then
        echo "[setup] could not install dataset-fashion-mnist; install it by hand" \
             "or set FPTT_EXT_DATA to a folder with the Fashion-MNIST IDX .gz files" >&2
        exit 1
    fi
fi
echo "[setup] ready"
