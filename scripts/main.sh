#!/usr/bin/env bash
# Set up (if needed), then the main job: train the R-MNIST LTC-SNN (784-256-256 LTC, LI 10)
# with FPTT on Poisson rate-coded Fashion-MNIST (T = 20) for one epoch, and print the test
# accuracy. Extra arguments go to `fptt-ext train` (e.g. --epochs 3, --method bptt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/fptt-ext train --dataset fashion-mnist --encoding rate --T 20 --method fptt \
    --epochs 1 --batch-size 128 --out runs/main "$@"
