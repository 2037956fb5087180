#!/usr/bin/env bash
# Rebuild tests/server/standard_handlers/goldens/ by running TorchServe 0.12's own standard handler
# classes over the stand-in models and inputs that golden_cases.json lists.
#
# TorchServe's handlers need torchvision (and captum), which cannot be installed beside the server's
# torch, so they run in a separate reference venv (default /tmp/ts-ref-venv, about 5.5 GB, never
# committed), made here on first use. Usage: scripts/build-handler-goldens.sh  [TS_REF_VENV=/path]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TS_REF_VENV:-/tmp/ts-ref-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import ts, torchvision, captum, yaml" 2>/dev/null; then
    echo "making the reference venv $venv (torch 2.14.1, torchvision 0.29.1, torchserve 0.12.0, captum)"
    python3 -m venv "$venv"
    # Pillow is pinned to the server's version: resizing must be bit-for-bit the same on both sides.
    "$venv/bin/pip" install --quiet torch==2.14.1 torchvision==0.29.1 torchserve==0.12.0 captum pyyaml \
        "$(grep -i '^pillow==' requirements-test.txt)"
fi
"$venv/bin/python" scripts/build_handler_goldens.py "$@"
