#!/usr/bin/env bash
# Static packaging checks for CI (.ci/run calls this after scripts/setup.sh): hadolint on the
# Dockerfile, helm lint --strict, `helm template | kubernetes-validate --strict` for the oldest and
# newest supported Kubernetes versions (1.31 and 1.37) with default and with customised values, the
# plain manifests likewise, and the freshness of every derived file. About 10 s; needs no root,
# no buildah and no images. The pytest suite (tests/deploy) checks the same and more (examples
# against the CRD, values schema); this script gives CI readable, tool-level failures.
# The image build and smoke test are separate: scripts/build-images.sh (root, about 5 min).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
export PATH="$PWD/.tools/bin:$PATH"
export HOME="${HOME:-/tmp}"
VERSIONS=(1.31.0 1.37.0)
CHART=charts/modelfleet

step() { printf '\n== %s\n' "$*"; }

step "hadolint Dockerfile"
hadolint --no-color Dockerfile

step "helm lint --strict"
helm lint --strict "$CHART"

# Values that switch on every optional branch of the templates.
CUSTOM=(--set operator.replicas=2 --set 'operator.watchNamespaces={team-a,team-b}'
        --set operator.nodeSelector.pool=system --set createNamespace=true
        --set 'operator.tolerations[0].operator=Exists' --set operator.image.digest=sha256:$(printf 'a%.0s' {1..64}))
for version in "${VERSIONS[@]}"; do
  step "helm template | kubernetes-validate --strict -k $version (defaults, customised), manifests/"
  helm template modelfleet "$CHART" --namespace modelfleet-system \
    | kubernetes-validate --strict --quiet -k "$version" -
  helm template modelfleet "$CHART" --namespace modelfleet-system "${CUSTOM[@]}" \
    | kubernetes-validate --strict --quiet -k "$version" -
  kubernetes-validate --strict --quiet -k "$version" manifests/*.yaml
done

step "derived files are fresh (chart CRD template, manifests/)"
python scripts/render_manifests.py --check

echo "deploy checks passed"
