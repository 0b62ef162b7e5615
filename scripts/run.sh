#!/usr/bin/env bash
# Set up (idempotent) and launch the app on http://127.0.0.1:7860 (GRADIO_SERVER_PORT or --port to change).
# Extra arguments go to `python -m demo.app` (e.g. --port 8000, --data-root DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m demo.app "$@"
