#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests.

1. Every resource the kustomize base in deploy/ pulls in (followed recursively) exists,
   parses, and validates against the Kubernetes API schemas (kubernetes-validate, strict:
   unknown fields are errors). cert-manager kinds are checked for the fields we rely on.
2. Every custom resource under examples/k8s/ and crates/l2sm-operator/tests/manifests/
   validates against the openAPIV3Schema of our generated CRDs in deploy/crds/ (jsonschema),
   and every other object there against the Kubernetes schemas.

Exit status 1 with one line per problem.
"""
import os
import subprocess
import sys
import tempfile

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S_VERSION = "1.29.0"
CERT_MANAGER_KINDS = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
problems = []


def docs_of(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def kustomize_files(directory):
    """Files a kustomization pulls in, following directory resources."""
    kfile = os.path.join(directory, "kustomization.yaml")
    if not os.path.exists(kfile):
        problems.append(f"{directory}: no kustomization.yaml")
        return []
    k = docs_of(kfile)[0]
    out = []
    for res in k.get("resources", []):
        path = os.path.join(directory, res)
        if os.path.isdir(path):
            out += kustomize_files(path)
        elif os.path.isfile(path):
            out.append(path)
        else:
            problems.append(f"{kfile}: resource {res} does not exist")
    return out


def k8s_validate(objects, origin):
    """Validates built-in kinds with kubernetes-validate (strict)."""
    if not objects:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(objects, f)
        name = f.name
    try:
        r = subprocess.run(
            ["kubernetes-validate", "--strict", "--quiet", "-k", K8S_VERSION, name],
            capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"{origin}: {(r.stdout + r.stderr).strip()}")
    finally:
        os.unlink(name)


def crd_schemas():
    schemas = {}
    crd_dir = os.path.join(ROOT, "deploy", "crds")
    for name in sorted(os.listdir(crd_dir)):
        if not name.endswith(".yaml") or name == "kustomization.yaml":
            continue
        for crd in docs_of(os.path.join(crd_dir, name)):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                schemas[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return schemas


def apply_defaults(obj, schema):
    """Fills in schema defaults, as the API server does before validating."""
    if isinstance(obj, dict) and schema.get("type") == "object":
        for name, sub in (schema.get("properties") or {}).items():
            if name not in obj and "default" in sub:
                obj[name] = sub["default"]
            if name in obj:
                apply_defaults(obj[name], sub)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            apply_defaults(item, schema["items"])


def check_cert_manager(obj, origin):
    spec = obj.get("spec") or {}
    if obj["kind"] == "Certificate":
        # A CA certificate names no host: commonName instead of dnsNames.
        names = "commonName" if spec.get("isCA") else "dnsNames"
        for field in ("secretName", "issuerRef", names):
            if field not in spec:
                problems.append(f"{origin}: Certificate without spec.{field}")
    elif obj["kind"] == "Issuer" and not spec:
        problems.append(f"{origin}: Issuer without spec")


def main():
    schemas = crd_schemas()
    if len(schemas) != 4:
        problems.append(f"deploy/crds: expected 4 CRDs, found {sorted(k for _, k in schemas)}")

    deploy_files = kustomize_files(os.path.join(ROOT, "deploy"))
    for path in deploy_files:
        rel = os.path.relpath(path, ROOT)
        builtin = []
        for obj in docs_of(path):
            key = (obj.get("apiVersion"), obj.get("kind"))
            if key in CERT_MANAGER_KINDS:
                check_cert_manager(obj, rel)
            else:
                builtin.append(obj)
        k8s_validate(builtin, rel)

    example_dirs = [os.path.join(ROOT, "examples", "k8s"),
                    os.path.join(ROOT, "crates", "l2sm-operator", "tests", "manifests")]
    checked = 0
    for d in example_dirs:
        if not os.path.isdir(d):
            continue
        for dirpath, _, files in os.walk(d):
            for name in sorted(files):
                if not name.endswith((".yaml", ".yml")) or name.startswith("invalid"):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, ROOT)
                builtin = []
                for obj in docs_of(path):
                    key = (obj.get("apiVersion"), obj.get("kind"))
                    if key in schemas:
                        try:
                            apply_defaults(obj, schemas[key])
                            jsonschema.validate(obj, schemas[key])
                        except jsonschema.ValidationError as e:
                            problems.append(f"{rel}: {obj['kind']} {obj['metadata'].get('name')}: {e.message} at {list(e.absolute_path)}")
                        checked += 1
                    elif key[0] and key[0].startswith("l2sm.l2sm.k8s.local"):
                        problems.append(f"{rel}: no CRD for {key}")
                    else:
                        builtin.append(obj)
                k8s_validate(builtin, rel)

    for p in problems:
        print(p)
    print(f"manifests: {len(deploy_files)} deploy files, {checked} custom resources checked, "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
