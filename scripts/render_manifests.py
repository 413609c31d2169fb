#!/usr/bin/env python3
"""Renders the kustomize base deploy/ into the one-file install deploy/l2sm.yaml.

There is no kustomize binary here, so this renders exactly the subset of kustomize our
kustomizations use, with kustomize's meaning, and refuses anything else:
- `resources`: files (each of one or more YAML documents) and directories holding a
  kustomization.yaml (rendered first, recursively), in the order listed (kustomize's
  `sortOptions: fifo`; our list is already in apply order: the Namespace first, the
  MutatingWebhookConfiguration last);
- `namespace`: set on every object of a namespaced kind; refused if an object's service
  account subject or webhook service names another namespace (kustomize's rules there depend
  on its version);
- `images`: `name` with `newName`, `newTag` and/or `digest`, applied to the `image` of every
  container and init container whose image name (without tag or digest) is `name`.

Usage: render_manifests.py [--check] [--kustomization DIR] [--output FILE]
  (default DIR deploy/, FILE deploy/l2sm.yaml). With --check, writes nothing and exits 1 when
  FILE differs from the rendering (stale). Exit status 2 for a kustomization it refuses.
"""
import argparse
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = ("# L2S-M in Rust: the one-file install, rendered from the kustomize base deploy/ by\n"
          "# scripts/render_manifests.py (scripts/validate-manifests.sh --render). Do not edit:\n"
          "# change deploy/ and render again (CI fails when this file is stale).\n"
          "# Install: kubectl apply -f deploy/l2sm.yaml (prerequisites: docs/kubernetes.md).\n")
KEYS = {"apiVersion", "kind", "namespace", "resources", "images"}
IMAGE_KEYS = {"name", "newName", "newTag", "digest"}
# Kinds without a namespace (those our base may hold); any kind in neither list is refused.
CLUSTER_KINDS = {"Namespace", "PriorityClass", "CustomResourceDefinition", "ClusterRole",
                 "ClusterRoleBinding", "MutatingWebhookConfiguration",
                 "ValidatingWebhookConfiguration", "StorageClass", "PersistentVolume",
                 "ClusterIssuer"}
NAMESPACED_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Secret", "Service",
                    "Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod",
                    "PersistentVolumeClaim", "PodDisruptionBudget", "NetworkPolicy",
                    "Issuer", "Certificate"}


class Refused(Exception):
    pass


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def image_name(image):
    """The image's name without tag or digest (a registry port is part of the name)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def set_image(image, rule):
    name = rule.get("newName", image_name(image))
    if "digest" in rule:
        return f"{name}@{rule['digest']}"
    if "newTag" in rule:
        return f"{name}:{rule['newTag']}"
    rest = image[len(image_name(image)):]
    return name + rest


def containers_of(obj):
    """Every container and init container list anywhere in the object (pod templates)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from containers_of(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from containers_of(item)


def set_namespace(obj, namespace, origin):
    kind = obj.get("kind")
    what = f"{origin}: {kind} {obj.get('metadata', {}).get('name')}"
    if kind in CLUSTER_KINDS:
        pass
    elif kind in NAMESPACED_KINDS:
        obj.setdefault("metadata", {})["namespace"] = namespace
    else:
        raise Refused(f"{what}: unknown whether kind {kind} is namespaced (add it to "
                      "scripts/render_manifests.py)")
    for subject in obj.get("subjects") or []:
        if subject.get("kind") == "ServiceAccount" and subject.get("namespace") != namespace:
            raise Refused(f"{what}: subject {subject.get('name')} in namespace "
                          f"{subject.get('namespace')!r}, not {namespace!r}")
    for hook in obj.get("webhooks") or []:
        service = (hook.get("clientConfig") or {}).get("service")
        if service and service.get("namespace") != namespace:
            raise Refused(f"{what}: webhook service in namespace {service.get('namespace')!r}, "
                          f"not {namespace!r}")


def render_dir(directory):
    kfile = os.path.join(directory, "kustomization.yaml")
    rel = os.path.relpath(kfile, ROOT)
    if not os.path.isfile(kfile):
        raise Refused(f"{os.path.relpath(directory, ROOT)}: no kustomization.yaml")
    docs = load_docs(kfile)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise Refused(f"{rel}: not one kustomization document")
    k = docs[0]
    unknown = sorted(set(k) - KEYS)
    if unknown:
        raise Refused(f"{rel}: unsupported field(s) {', '.join(unknown)} (only "
                      f"{', '.join(sorted(KEYS))})")
    if k.get("kind", "Kustomization") != "Kustomization":
        raise Refused(f"{rel}: kind {k.get('kind')}, not Kustomization")
    objects = []
    for res in k.get("resources") or []:
        path = os.path.normpath(os.path.join(directory, res))
        if "://" in res or not path.startswith(ROOT + os.sep):
            raise Refused(f"{rel}: resource {res} is not a path inside the repository")
        if os.path.isdir(path):
            objects += render_dir(path)
        elif os.path.isfile(path):
            for obj in load_docs(path):
                if not isinstance(obj, dict) or "kind" not in obj:
                    raise Refused(f"{os.path.relpath(path, ROOT)}: a document is not an object")
                objects.append((os.path.relpath(path, ROOT), obj))
        else:
            raise Refused(f"{rel}: resource {res} does not exist")
    for rule in k.get("images") or []:
        unknown = sorted(set(rule) - IMAGE_KEYS)
        if unknown or "name" not in rule or len(rule) < 2:
            raise Refused(f"{rel}: images entry {rule}: needs name and newName, newTag or "
                          f"digest, nothing else")
        used = False
        for _, obj in objects:
            for c in containers_of(obj):
                if isinstance(c.get("image"), str) and image_name(c["image"]) == rule["name"]:
                    c["image"] = set_image(c["image"], rule)
                    used = True
        if not used:
            raise Refused(f"{rel}: images entry {rule['name']} matches no container")
    if "namespace" in k:
        for origin, obj in objects:
            set_namespace(obj, k["namespace"], origin)
    return objects


class Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _str)


def render(directory):
    objects = render_dir(directory)
    body = "".join("---\n" + yaml.dump(obj, Dumper=Dumper, sort_keys=False, width=100)
                   for _, obj in objects)
    return HEADER + body, len(objects)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true")
    p.add_argument("--kustomization", default=os.path.join(ROOT, "deploy"))
    p.add_argument("--output", default=os.path.join(ROOT, "deploy", "l2sm.yaml"))
    a = p.parse_args()
    try:
        text, count = render(os.path.abspath(a.kustomization))
    except (Refused, yaml.YAMLError, OSError) as e:
        print(f"render_manifests: {e}", file=sys.stderr)
        return 2
    out = os.path.relpath(os.path.abspath(a.output), ROOT)
    if a.check:
        try:
            with open(a.output) as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            print(f"{out} is stale: render it with scripts/validate-manifests.sh --render",
                  file=sys.stderr)
            return 1
        print(f"{out}: up to date ({count} objects)")
        return 0
    with open(a.output + ".tmp", "w") as f:
        f.write(text)
    os.replace(a.output + ".tmp", a.output)
    print(f"wrote {out} ({count} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
