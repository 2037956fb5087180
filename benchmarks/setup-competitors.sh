#!/usr/bin/env bash
# Creates the OIP benchmark's competitor venvs (benchmarks/oip.py) next to .venv, each with its own pins:
#   .venv-bench-mlserver  MLServer 1.7.1   (benchmarks/requirements-competitors-mlserver.txt)
#   .venv-bench-kserve    KServe 0.21.0    (benchmarks/requirements-competitors-kserve.txt)
# Idempotent: a venv whose pins are all installed is kept. In each venv, torch 2.13.0 goes in first and
# alone (--no-deps), the CPU build, exactly as scripts/setup.sh does for .venv: from the PyTorch CPU
# index when it answers within 5 s, else from your pip configuration's index (on the benchmark machine
# that is the local CPU wheel in /opt/wheels); then the pinned set, which holds torch's own dependencies.
# The venvs are git-ignored (.venv-*/). Nothing of ModelFleet is installed in them: the servers only
# import benchmarks/competitors/*.py and read the TorchScript files the benchmark writes.
# Usage: bash benchmarks/setup-competitors.sh [mlserver] [kserve]     (default: both)
#   MODELFLEET_TORCH_CPU_INDEX   default https://download.pytorch.org/whl/cpu
#   PYTHON                       the interpreter to base the venvs on (default python3.11, else python3)
#   VENV_ROOT                    where the venvs go (default: the repository root, where oip.py looks)
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
CPU_INDEX=${MODELFLEET_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
CPU_INDEX=${CPU_INDEX%/}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
PROBE_TIMEOUT_S=5
VENV_ROOT=${VENV_ROOT:-.}

phase() { printf '[setup-competitors %d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

# Exit 0 when the CPU index serves torch's page in time.
cpu_index_answers() {
  timeout $((PROBE_TIMEOUT_S + 3)) "$PYTHON" - "$CPU_INDEX/torch/" "$PROBE_TIMEOUT_S" >/dev/null 2>&1 <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as answer:
    sys.exit(0 if answer.status == 200 else 1)
PY
}

# Exit 0 when every "name==version" pin of the file is installed in the venv.
pins_satisfied() {
  local py=$1 file=$2
  "$py" - "$file" <<'PY'
import sys
from importlib import metadata
missing = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, version = line.partition("==")
    try:
        if metadata.version(name) != version:
            missing.append(line)
    except metadata.PackageNotFoundError:
        missing.append(line)
sys.exit(1 if missing else 0)
PY
}

setup_one() {
  local name=$1
  local venv=$VENV_ROOT/.venv-bench-$name
  local requirements=benchmarks/requirements-competitors-$name.txt
  local py=$venv/bin/python
  local log=$venv/setup-pip.log
  phase "$venv: $requirements"
  if [ ! -x "$py" ]; then
    phase "creating $venv with $PYTHON"
    "$PYTHON" -m venv "$venv"
  fi
  : >"$log"
  local pip=("$py" -m pip install --disable-pip-version-check --progress-bar off)
  if "$py" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' and torch.version.cuda is None else 1)" 2>/dev/null; then
    phase "torch $TORCH_VERSION (CPU build) already in $venv: kept"
  elif cpu_index_answers; then
    phase "torch $TORCH_VERSION from $CPU_INDEX"
    "${pip[@]}" --no-deps --index-url "$CPU_INDEX" "torch==$TORCH_VERSION" >>"$log" 2>&1
  else
    phase "$CPU_INDEX did not answer: torch $TORCH_VERSION from your pip configuration's index"
    "${pip[@]}" --no-deps "torch==$TORCH_VERSION" >>"$log" 2>&1
  fi
  if pins_satisfied "$py" "$requirements"; then
    phase "every pin of $requirements is installed: kept"
  else
    phase "installing $requirements (pip's output: $log)"
    "${pip[@]}" "torch==$TORCH_VERSION" -r "$requirements" >>"$log" 2>&1 || {
      echo "setup-competitors: pip failed; the last 30 lines of $log:" >&2
      tail -n 30 "$log" >&2
      exit 1
    }
  fi
  "$py" -m pip check
  "$py" -c "import torch; assert torch.version.cuda is None, 'a CUDA torch: the benchmark wants the CPU build'; print('torch', torch.__version__)"
  phase "$venv ready"
}

chosen=("$@")
[ ${#chosen[@]} -gt 0 ] || chosen=(mlserver kserve)
for name in "${chosen[@]}"; do
  case "$name" in
    mlserver|kserve) setup_one "$name" ;;
    *) echo "setup-competitors: unknown venv '$name' (mlserver or kserve)" >&2; exit 2 ;;
  esac
done
phase "done: python benchmarks/oip.py --runs 3 --duration 6"
