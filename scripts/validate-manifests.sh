#!/usr/bin/env bash
# Validates the Kubernetes manifests offline (deploy/, examples/k8s/, the operator's test
# manifests) against the Kubernetes API schemas and our CRDs, and checks that the one-file
# install deploy/l2sm.yaml is the rendering of the kustomize base deploy/. Python tools go
# into a venv under target/ so nothing is installed system-wide.
#
# scripts/validate-manifests.sh --render   writes deploy/l2sm.yaml again (after a deploy/ change)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/manifest-venv
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    'kubernetes-validate==1.37.0' 'jsonschema>=4,<5' 'PyYAML>=6,<7'
fi
if [ "${1:-}" = --render ]; then
  exec "$venv/bin/python" scripts/render_manifests.py
fi
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" scripts/validate_manifests.py
# deploy/l2sm.yaml must be what the base renders to (kubectl apply -f deploy/l2sm.yaml).
"$venv/bin/python" scripts/render_manifests.py --check
# The renderer refuses kustomize fields it does not implement, rather than ignore them.
refused=$(mktemp -d)
trap 'rm -rf "$refused"' EXIT
printf 'resources: []\npatches:\n  - path: x.yaml\n' >"$refused/kustomization.yaml"
if "$venv/bin/python" scripts/render_manifests.py --kustomization "$refused" \
  --output "$refused/out.yaml" 2>"$refused/err"; then
  echo "render_manifests.py accepted a kustomization with patches" >&2
  exit 1
fi
grep -q "unsupported field(s) patches" "$refused/err" || {
  echo "render_manifests.py refused patches with another message: $(cat "$refused/err")" >&2
  exit 1
}
