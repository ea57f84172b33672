#!/usr/bin/env bash
# Set up (if needed), lint, run the whole test suite (doctests and docs examples included),
# execute every tutorial notebook in notebooks/ and build the documentation site.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check fptt_ext tests examples scripts
# setup.sh has installed Fashion-MNIST (or FPTT_EXT_DATA names it): tests that need it must run,
# so a missing dataset fails them instead of skipping them; -rs lists any skip with its reason.
FPTT_EXT_REQUIRE_DATA=1 .venv/bin/python -m pytest -q -rs "$@"

# Every notebooks/*.ipynb, top to bottom, with its small budget; a stuck cell fails after the timeout.
echo "[test] executing the tutorial notebooks"
.venv/bin/python -m pytest -q --nbmake --nbmake-timeout=600 notebooks/

# The site (mkdocs.yml): any warning (a broken link, a docstring mkdocstrings cannot parse) fails.
echo "[test] building the documentation site"
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet -d "$site"
echo "[test] documentation built"
