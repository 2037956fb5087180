#!/usr/bin/env bash
# Sets up everything ModelFleet needs in ./.venv from nothing (idempotent): the CPU torch build
# FIRST (a bare "torch" requirement would make pip fetch the multi-GB CUDA build), then the pinned
# test/dev set, then the four distributions in editable mode, then kubectl and helm binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check torch==2.13.0
python -m pip install -q --disable-pip-version-check -r requirements-test.txt
python -m pip install -q --disable-pip-version-check --no-deps -e ./protos -e ./server -e ./operator -e ./local
if [ -f scripts/install-k8s-tools.sh ]; then
  bash scripts/install-k8s-tools.sh .tools/bin >/dev/null
fi
python -m pip check
