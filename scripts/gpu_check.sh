#!/usr/bin/env bash
# The GPU check, ready for the few minutes a machine with a GPU is lent: the CUDA tests, the GPU rows of
# bench.run, and a timed short run of the paper's recipe (DeiT-Tiny at 112 px: pretraining, then
# fine-tuning, through core.pipeline) on a generated folder of 2,000 photos, in one report. About 6 minutes
# on an H100. Without CUDA it says so in one line and exits 0.
#
#   bash scripts/gpu_check.sh [REPORT]     (default REPORT: docs/GPU.md)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device here: nothing to check (the CPU path is what bash scripts/test.sh runs)"
    exit 0
fi
REPORT=${1:-docs/GPU.md}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
started=$(date +%s)
failed=0
section() { printf '\n## %s\n\n' "$1" >> "$REPORT"; }
timed() {  # timed LABEL COMMAND...: run it, keep its output's tail in the report with its time and status
    local label=$1 t0 status
    shift
    t0=$(date +%s)
    "$@" > "$WORK/out.txt" 2>&1
    status=$?
    ((status)) && failed=1
    section "$label ($(($(date +%s) - t0)) s, exit $status)"
    { echo '```'; echo "\$ $*"; tail -n 40 "$WORK/out.txt"; echo '```'; } >> "$REPORT"
}

mkdir -p "$(dirname "$REPORT")"
{
    echo "# GPU check"
    echo
    echo "Written by \`bash scripts/gpu_check.sh\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null)."
    echo
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    echo '```'
} > "$REPORT"

timed "The CUDA tests" "$PY" -m pytest -q tests/core/test_cuda.py
timed "bench.run, the GPU rows" "$PY" -m bench.run --device cuda --rows 1,2,7 --out "$WORK/bench.md"
[[ -f $WORK/bench.md ]] && cat "$WORK/bench.md" >> "$REPORT"
timed "Photos to train on" "$PY" -m scripts.make_folder_dataset "$WORK/photos" --classes 10 --largest 200 --imbalance 1
timed "The paper's recipe, cut to 3 minutes: pretraining then fine-tuning" \
    "$PY" -m core.pipeline --dataset "folder:$WORK/photos" --preset paper --pretrain always --minutes 3 \
    --device cuda --out "$WORK/paper"
[[ -f $WORK/paper/pipeline.json ]] && { section "Its record"; echo '```json'; cat "$WORK/paper/pipeline.json"; echo '```'; } >> "$REPORT"
printf '\nThe whole check: %s s.\n' "$(($(date +%s) - started))" >> "$REPORT"
echo "gpu_check: wrote $REPORT ($(($(date +%s) - started)) s)"
exit $failed
