#!/usr/bin/env bash
# Validates the Kubernetes manifests offline (deploy/, examples/k8s/, the operator's test
# manifests) against the Kubernetes API schemas and our CRDs. Python tools go into a venv
# under target/ so nothing is installed system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/manifest-venv
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    'kubernetes-validate==1.37.0' 'jsonschema>=4,<5' 'PyYAML>=6,<7'
fi
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" scripts/validate_manifests.py
