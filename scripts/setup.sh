#!/usr/bin/env bash
# Idempotent set-up: .venv with Python 3.11 and the pinned requirements, plus the
# Debian packages that make the project work offline (Fashion-MNIST files, chromium
# for the browser test). A second run with everything in place takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
VENV=.venv
STAMP=$VENV/.requirements.sha256
DEB_PACKAGES=(dataset-fashion-mnist chromium)

missing_debs=()
for pkg in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing_debs+=("$pkg")
done
if ((${#missing_debs[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "setup: installing Debian packages: ${missing_debs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_debs[@]}" >/dev/null
    else
        echo "setup: not root, skipping Debian packages (${missing_debs[*]});" \
             "datasets then need --download and the browser test is skipped" >&2
    fi
fi

[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -f $STAMP || $(cat "$STAMP") != "$want" ]]; then
    echo "setup: installing pinned requirements into $VENV (first run takes a few minutes)"
    "$VENV/bin/python" -m pip install -q -r requirements.txt
    echo "$want" > "$STAMP"
fi
