#!/usr/bin/env bash
# Set up (if needed), lint, and run the whole test suite, doctests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check fptt_ext tests examples
exec .venv/bin/python -m pytest -q "$@"
