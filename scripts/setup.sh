#!/usr/bin/env bash
# Sets up everything ModelFleet needs in ./.venv from nothing (idempotent: a rerun skips what is there).
# Phases, each announced with the elapsed time:
#   1. the venv (python3 -m venv .venv);
#   2. torch 2.13.0 alone (--no-deps): the CPU build from the PyTorch CPU wheel index by default
#      (a bare "torch" from PyPI is the CUDA build, several GB); when that index does not answer
#      within 5 s, your pip configuration's index instead (then the build is whatever it serves,
#      and the summary warns if that is CUDA); the CUDA build only when asked (--torch cuda);
#   3. the pinned test/dev set (requirements-test.txt) and torch's own dependencies, from your pip
#      configuration's index (torch itself is already there, so nothing else comes from the CPU index);
#   4. the four distributions in editable mode;  5. kubectl and helm into .tools/bin;  6. pip check;
#   7. two venvs beside it (each reused when there): .venv-protoc, the pinned stub generator
#      (protos/requirements-protoc.txt), which is also the oldest protobuf modelfleet-protos claims, with
#      modelfleet-protos installed; and .venv-clients, tritonclient and KServe (requirements-clients.txt).
#      tests/clients run client scripts in them; each ends with its own pip check.
# It ends with the torch build it installed (torch.__version__, torch.version.cuda).
# Usage: bash scripts/setup.sh [--torch cpu|cuda] [--dry-run]
#   --torch / MODELFLEET_TORCH           cpu (default) or cuda
#   --dry-run / MODELFLEET_SETUP_DRY_RUN=1  print the commands a fresh clone runs (and probe the CPU
#                                        index, to say which torch command would run); run none of them
#   MODELFLEET_TORCH_CPU_INDEX           default https://download.pytorch.org/whl/cpu (e.g. a mirror of it)
# pip's whole output goes to .venv/setup-pip.log; the terminal shows downloads, what got installed, and errors.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
TORCH_BUILD=${MODELFLEET_TORCH:-cpu}
CPU_INDEX=${MODELFLEET_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
CPU_INDEX=${CPU_INDEX%/}
PROBE_TIMEOUT_S=5    # per connection attempt; the whole probe is cut at PROBE_TIMEOUT_S + 3 (DNS included)
DRY_RUN=${MODELFLEET_SETUP_DRY_RUN:-0}
VENV_PY=.venv/bin/python
PIP=("$VENV_PY" -m pip install --disable-pip-version-check --progress-bar off)
LOG=.venv/setup-pip.log

usage() {
  sed -n 's/^# \{0,1\}//; /^Usage:/,/^pip.s whole/p' "$0" | sed '$d'
  exit "$1"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --torch) [ $# -ge 2 ] || usage 2; TORCH_BUILD=$2; shift ;;
    --torch=*) TORCH_BUILD=${1#--torch=} ;;
    -h|--help) usage 0 ;;
    *) echo "setup: unknown argument '$1'" >&2; usage 2 ;;
  esac
  shift
done
case "$TORCH_BUILD" in
  cpu|cuda) ;;
  *) echo "setup: --torch / MODELFLEET_TORCH must be cpu or cuda, not '$TORCH_BUILD'" >&2; exit 2 ;;
esac
case "$DRY_RUN" in 0|""|false|no) DRY_RUN=0 ;; *) DRY_RUN=1 ;; esac

phase() { printf '[setup %d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

# The exact command, quoted so that it can be pasted; an optional trailing "# comment".
show() {
  local comment=""
  if [ "$1" = "--comment" ]; then comment="   # $2"; shift 2; fi
  printf '+'; printf ' %q' "$@"; printf '%s\n' "$comment"
}

run() { show "$@"; [ "$DRY_RUN" = 1 ] || "$@"; }

# pip's lines worth a person's attention; everything else is in $LOG.
compact() {
  local line
  while IFS= read -r line; do
    case "$line" in
      "WARNING: Location '"*"' is ignored: "*) ;;  # an extra index in pip's configuration lacks a package
      "Looking in indexes:"*|*" Downloading "*|"Downloading "*|"Installing collected packages:"*|"Successfully installed"*|\
      ERROR*|WARNING*|error:*|*"Requirement already satisfied: torch"*)
        [ ${#line} -le 200 ] || line="${line:0:197}..."
        printf '    %s\n' "$line" ;;
    esac
  done
}

pip_install() { pip_install_into "$VENV_PY" "$@"; }

# pip install into the venv whose python is $1.
pip_install_into() {
  local pip=("$1" -m pip install --disable-pip-version-check --progress-bar off)
  shift
  show "${pip[@]}" "$@"
  [ "$DRY_RUN" = 1 ] && return 0
  local status=0
  "${pip[@]}" "$@" 2>&1 | tee -a "$LOG" | compact || status=${PIPESTATUS[0]}
  if [ "$status" != 0 ]; then
    echo "setup: pip failed (exit $status); the last 30 lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit "$status"
  fi
}

# "<torch.__version__> <torch.version.cuda or None>" of the torch in .venv, read from torch/version.py
# without importing torch (seconds); nothing when there is none.
installed_torch() {
  [ -x "$VENV_PY" ] || return 0
  "$VENV_PY" - 2>/dev/null <<'PY' || true
import importlib.util, pathlib, runpy
spec = importlib.util.find_spec("torch")
if spec is not None and spec.submodule_search_locations:
    found = runpy.run_path(str(pathlib.Path(list(spec.submodule_search_locations)[0]) / "version.py"))
    print(found["__version__"], found.get("cuda"))
PY
}

# Exit 0 when the CPU index serves torch's page in time; otherwise prints why on stdout.
probe_cpu_index() {
  local why status=0
  why=$(timeout $((PROBE_TIMEOUT_S + 3)) python3 - "$CPU_INDEX/torch/" "$PROBE_TIMEOUT_S" 2>&1 <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as answer:
        sys.exit(0 if answer.status == 200 else f"HTTP {answer.status}")
except Exception as error:  # any failure means "use the fallback"; the reason is shown
    sys.exit(f"{type(error).__name__}: {error}")
PY
  ) || status=$?
  [ "$status" = 0 ] && return 0
  [ "$status" = 124 ] && why="no answer within $((PROBE_TIMEOUT_S + 3)) s"
  echo "${why:-exit $status}" | tail -n 1
  return 1
}

if [ "$DRY_RUN" = 1 ]; then
  phase "dry run: the commands a fresh clone runs (nothing is installed, already-installed parts are not skipped)"
fi

phase "creating .venv ..."
if [ "$DRY_RUN" = 0 ] && [ -x "$VENV_PY" ]; then
  phase ".venv exists: reused"
else
  run python3 -m venv .venv
fi
[ "$DRY_RUN" = 1 ] || : >"$LOG"

phase "installing torch $TORCH_VERSION ($TORCH_BUILD build) ..."
current=""
[ "$DRY_RUN" = 1 ] || current=$(installed_torch)
force=()
installed_version=${current%% *}
installed_cuda=${current#* }
installed_build=cpu
[ "$installed_cuda" = None ] || installed_build=cuda
if [ -n "$current" ] && [ "${installed_version%%+*}" = "$TORCH_VERSION" ] && [ "$installed_build" = "$TORCH_BUILD" ]; then
  phase "torch $installed_version (torch.version.cuda=$installed_cuda) is already installed: kept"
else
  # Same version, other build: pip would call it satisfied (2.13.0+cpu == 2.13.0), so reinstall it.
  if [ -n "$current" ] && [ "${installed_version%%+*}" = "$TORCH_VERSION" ]; then force=(--force-reinstall); fi
  if [ "$TORCH_BUILD" = cuda ]; then
    phase "cuda build: from your pip configuration's index (PyPI's Linux x86_64 torch is the CUDA build)"
    pip_install --no-deps "${force[@]}" "torch==$TORCH_VERSION"
  else
    started=$SECONDS
    if why=$(probe_cpu_index); then
      phase "$CPU_INDEX answers: torch comes from there"
      chosen=cpu-index
    else
      phase "$CPU_INDEX did not answer in $((SECONDS - started)) s ($why): falling back to your pip configuration's index"
      chosen=fallback
    fi
    if [ "$DRY_RUN" = 1 ]; then
      show --comment "when $CPU_INDEX answers" "${PIP[@]}" --no-deps --index-url "$CPU_INDEX" "torch==$TORCH_VERSION"
      show --comment "fallback, when it does not answer within $PROBE_TIMEOUT_S s" "${PIP[@]}" --no-deps "torch==$TORCH_VERSION"
      phase "this machine would run the $chosen command"
    elif [ "$chosen" = cpu-index ]; then
      pip_install --no-deps "${force[@]}" --index-url "$CPU_INDEX" "torch==$TORCH_VERSION"
    else
      pip_install --no-deps "${force[@]}" "torch==$TORCH_VERSION"
    fi
  fi
fi

phase "installing requirements-test.txt and torch's dependencies ..."
pip_install "torch==$TORCH_VERSION" -r requirements-test.txt

phase "installing protos, server, operator, local and convert (editable) ..."
pip_install --no-deps -e ./protos -e ./server -e ./operator -e ./local -e ./convert

phase "installing kubectl and helm into .tools/bin ..."
run env PYTHON="$VENV_PY" bash scripts/install-k8s-tools.sh .tools/bin

phase "checking the installed set (pip check) ..."
run "$VENV_PY" -m pip check

# A venv of its own beside .venv (made when missing, kept otherwise), its packages, and pip check.
side_venv() {
  local venv=$1; shift
  if [ "$DRY_RUN" = 0 ] && [ -x "$venv/bin/python" ]; then
    phase "$venv exists: reused"
  else
    run python3 -m venv "$venv"
  fi
  pip_install_into "$venv/bin/python" "$@"
}

phase "the stub generator's venv (.venv-protoc: also the oldest protobuf modelfleet-protos claims) ..."
side_venv .venv-protoc -r protos/requirements-protoc.txt
pip_install_into .venv-protoc/bin/python --no-deps -e ./protos
run .venv-protoc/bin/python -m pip check

phase "the Open Inference clients' venv (.venv-clients: tritonclient, KServe) ..."
side_venv .venv-clients -r requirements-clients.txt
run .venv-clients/bin/python -m pip check

if [ "$DRY_RUN" = 1 ]; then
  phase "dry run done: nothing was run"
  exit 0
fi
read -r torch_version torch_cuda < <("$VENV_PY" -c 'import torch; print(torch.__version__, torch.version.cuda)')
if [ "$torch_cuda" = None ]; then
  phase "done: torch $torch_version, the CPU build (torch.version.cuda=None)"
  if [ "$TORCH_BUILD" = cuda ]; then
    phase "asked for the CUDA build, but your pip configuration's index served the CPU one"
  fi
  if [ "$TORCH_BUILD" = cpu ] && command -v nvidia-smi >/dev/null 2>&1; then
    phase "this machine has an NVIDIA GPU; for the CUDA build: bash scripts/setup.sh --torch cuda"
  fi
else
  phase "done: torch $torch_version, a CUDA build (torch.version.cuda=$torch_cuda)"
  echo "WARNING: torch $torch_version is a CUDA build (several GB with its nvidia-* packages)." \
       "The tests and the local fleet need only the CPU build: bash scripts/setup.sh --torch cpu" >&2
fi
echo "Tests: .venv/bin/python -m pytest -q    (pip's full output: $LOG)"
