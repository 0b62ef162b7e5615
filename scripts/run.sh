#!/usr/bin/env bash
# Set up (idempotent) and run the main job: a cpu-quick pretraining run on Fashion-MNIST.
# Extra arguments go to `python -m core.train` (e.g. --dataset digits, --epochs 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m core.train --preset cpu-quick --out runs/cpu-quick "$@"
