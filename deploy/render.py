#!/usr/bin/env python3
"""Render a kustomization without kustomize, for the features deploy/ uses.

`kubectl kustomize DIR` (or `kustomize build DIR`) is the way to render
deploy/; this module exists so that CI can render and validate the manifests
offline, where no kustomize binary can be installed. It implements the
kustomize features the base and overlays use, and refuses everything else
(a field it does not know is an error, never silently skipped), so it cannot
quietly drift from what kustomize would produce:

- ``resources``: YAML files (one or more documents) and directories holding
  a kustomization.yaml, rendered recursively;
- ``namespace``: sets ``metadata.namespace`` on every namespaced object;
- ``images``: ``name`` -> ``newName`` / ``newTag`` / ``digest`` for the
  containers and init containers of workloads;
- ``patches``: strategic-merge patches (a partial object naming its target by
  apiVersion, kind and metadata.name) and JSON 6902 patches (a list of
  operations, with a ``target``), from ``path`` or inline ``patch``.

Strategic merge follows Kubernetes: maps merge, ``null`` deletes a key,
lists with a patch merge key (containers by name, env by name, volumeMounts
by mountPath...) merge element by element, other lists are replaced. New list
elements go first, as kustomize places them. On custom resources (no
schema) every list is replaced. ``$patch`` and other directives are refused.

Usage: python deploy/render.py deploy/overlays/gpu > explaind.yaml
"""
from __future__ import annotations

import copy
import os
import re
import sys
from typing import Any, Iterable

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}

# Kinds whose objects have no namespace (the ones a kustomization here could
# plausibly hold); everything else gets the kustomization's namespace.
CLUSTER_SCOPED_KINDS = {
    "Namespace", "Node", "PersistentVolume", "StorageClass", "CustomResourceDefinition",
    "ClusterRole", "ClusterRoleBinding", "PriorityClass", "RuntimeClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService",
    "IngressClass", "CSIDriver", "VolumeSnapshotClass",
}

# API groups of built-in kinds: strategic merge knows their list merge keys.
BUILTIN_GROUPS = {"", "apps", "batch", "autoscaling", "policy", "networking.k8s.io",
                  "rbac.authorization.k8s.io", "storage.k8s.io", "scheduling.k8s.io"}

# (path pattern, merge key) for the built-in lists that strategic merge
# merges element by element (patchStrategy=merge in the Kubernetes API).
# A path is the dotted field path with "[]" after each list, e.g.
# spec.template.spec.containers[].env
_POD = r"(?:^spec\.template\.spec|^spec\.jobTemplate\.spec\.template\.spec|^spec)"
_CONTAINERS = _POD + r"\.(?:containers|initContainers|ephemeralContainers)"
LIST_MERGE_KEYS: list[tuple[re.Pattern, str]] = [
    (re.compile(_CONTAINERS + r"$"), "name"),
    (re.compile(_CONTAINERS + r"\[\]\.env$"), "name"),
    (re.compile(_CONTAINERS + r"\[\]\.volumeMounts$"), "mountPath"),
    (re.compile(_CONTAINERS + r"\[\]\.volumeDevices$"), "devicePath"),
    (re.compile(_CONTAINERS + r"\[\]\.ports$"), "containerPort"),
    (re.compile(_POD + r"\.volumes$"), "name"),
    (re.compile(_POD + r"\.imagePullSecrets$"), "name"),
    (re.compile(_POD + r"\.topologySpreadConstraints$"), "topologyKey"),
    (re.compile(_POD + r"\.hostAliases$"), "ip"),
    (re.compile(r"^spec\.ports$"), "port"),  # Service
]


class RenderError(Exception):
    """The kustomization uses something this renderer does not implement, or is broken."""


def _load_yaml_documents(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise RenderError(f"{path}: every document must be a Kubernetes object")
    return docs


def _kustomization_file(directory: str) -> str:
    for name in KUSTOMIZATION_FILES:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    raise RenderError(f"{directory}: no kustomization.yaml")


def _group(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def _key(obj: dict) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace", ""))


# ---------------------------------------------------------------- strategic merge

def _merge_key(path: str) -> str | None:
    for pattern, key in LIST_MERGE_KEYS:
        if pattern.search(path):
            return key
    return None


def strategic_merge(base: Any, patch: Any, builtin: bool, path: str = "") -> Any:
    """Apply a strategic-merge patch `patch` to `base`; returns a new value."""
    if isinstance(patch, dict) and isinstance(base, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            if isinstance(k, str) and k.startswith("$"):
                raise RenderError(f"strategic-merge directive {k!r} at {path or '.'} is not supported")
            sub = f"{path}.{k}" if path else str(k)
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, builtin, sub)
            else:
                out[k] = _strip_nulls(copy.deepcopy(v), sub)
        return out
    if isinstance(patch, list) and isinstance(base, list):
        key = _merge_key(path) if builtin else None
        if key is None:
            return _strip_nulls(copy.deepcopy(patch), path)
        return _merge_list(base, patch, key, builtin, path)
    return _strip_nulls(copy.deepcopy(patch), path)


def _strip_nulls(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        for k in list(value):
            if isinstance(k, str) and k.startswith("$"):
                raise RenderError(f"strategic-merge directive {k!r} at {path or '.'} is not supported")
            if value[k] is None:
                del value[k]
            else:
                value[k] = _strip_nulls(value[k], f"{path}.{k}")
    elif isinstance(value, list):
        return [_strip_nulls(v, path + "[]") for v in value]
    return value


def _merge_list(base: list, patch: list, key: str, builtin: bool, path: str) -> list:
    merged = [copy.deepcopy(item) for item in base]
    added = []
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise RenderError(f"{path}: patch list element lacks its merge key {key!r}")
        for i, existing in enumerate(merged):
            if isinstance(existing, dict) and existing.get(key) == item[key]:
                merged[i] = strategic_merge(existing, item, builtin, path + "[]")
                break
        else:
            added.append(_strip_nulls(copy.deepcopy(item), path + "[]"))
    # kustomize puts elements that only the patch has before the original ones.
    return added + merged


# ---------------------------------------------------------------- JSON 6902

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise RenderError(f"JSON pointer {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for p in parts:
        if isinstance(doc, list):
            doc = doc[int(p)]
        elif isinstance(doc, dict):
            if p not in doc:
                raise RenderError(f"JSON patch path element {p!r} not found")
            doc = doc[p]
        else:
            raise RenderError(f"JSON patch path goes through a scalar at {p!r}")
    return doc


def json6902(doc: dict, ops: list[dict]) -> dict:
    """Apply RFC 6902 operations (add, remove, replace, test, copy, move)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        parts = _pointer(op.get("path", ""))
        if not parts:
            raise RenderError("JSON patch on the whole document is not supported")
        parent, last = _walk(doc, parts[:-1]), parts[-1]
        if kind in ("add", "replace"):
            value = copy.deepcopy(op["value"])
        elif kind in ("copy", "move"):
            src = _pointer(op["from"])
            value = copy.deepcopy(_walk(doc, src))
            if kind == "move":
                src_parent = _walk(doc, src[:-1])
                if isinstance(src_parent, list):
                    src_parent.pop(int(src[-1]))
                else:
                    del src_parent[src[-1]]
                parent = _walk(doc, parts[:-1])
            kind = "add"
        elif kind == "remove":
            value = None
        elif kind == "test":
            if _walk(doc, parts) != op["value"]:
                raise RenderError(f"JSON patch test failed at {op['path']}")
            continue
        else:
            raise RenderError(f"JSON patch op {kind!r} is not supported")
        if isinstance(parent, list):
            if kind == "add":
                parent.insert(len(parent) if last == "-" else int(last), value)
            elif kind == "replace":
                parent[int(last)] = value
            else:
                parent.pop(int(last))
        elif isinstance(parent, dict):
            if kind in ("replace", "remove") and last not in parent:
                raise RenderError(f"JSON patch {kind} of a missing path {op['path']}")
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = value
        else:
            raise RenderError(f"JSON patch parent of {op['path']} is a scalar")
    return doc


# ---------------------------------------------------------------- transformers

def _matches_target(obj: dict, target: dict) -> bool:
    allowed = {"group", "version", "kind", "name", "namespace"}
    unknown = set(target) - allowed
    if unknown:
        raise RenderError(f"patch target fields {sorted(unknown)} are not supported")
    api = obj["apiVersion"]
    checks = {
        "group": _group(api),
        "version": api.split("/")[-1],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"].get("namespace", ""),
    }
    return all(re.fullmatch(str(v), checks[k]) for k, v in target.items())


def _apply_patch(objects: list[dict], entry: dict, directory: str) -> None:
    unknown = set(entry) - {"path", "patch", "target"}
    if unknown:
        raise RenderError(f"patch fields {sorted(unknown)} are not supported")
    if ("path" in entry) == ("patch" in entry):
        raise RenderError("a patch needs exactly one of path and patch")
    text = entry.get("patch")
    if "path" in entry:
        with open(os.path.join(directory, entry["path"]), encoding="utf-8") as f:
            text = f.read()
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    target = entry.get("target")
    if len(docs) == 1 and isinstance(docs[0], list):  # JSON 6902
        if not target:
            raise RenderError("a JSON 6902 patch needs a target")
        hits = [i for i, o in enumerate(objects) if _matches_target(o, target)]
        if not hits:
            raise RenderError(f"patch target {target} matches no object")
        for i in hits:
            objects[i] = json6902(objects[i], docs[0])
        return
    for patch in docs:
        if not isinstance(patch, dict) or "kind" not in patch or "metadata" not in patch:
            raise RenderError("a strategic-merge patch must be a partial Kubernetes object")
        if target:
            hits = [i for i, o in enumerate(objects) if _matches_target(o, target)]
        else:
            hits = [i for i, o in enumerate(objects)
                    if o["kind"] == patch["kind"]
                    and o["metadata"]["name"] == patch["metadata"]["name"]
                    and _group(o["apiVersion"]) == _group(patch.get("apiVersion", o["apiVersion"]))]
        if not hits:
            raise RenderError(f"patch for {patch['kind']}/{patch['metadata'].get('name')} matches no object")
        for i in hits:
            obj = objects[i]
            body = copy.deepcopy(patch)
            if target:  # the patch's own name does not rename the target
                body.setdefault("metadata", {})["name"] = obj["metadata"]["name"]
            objects[i] = strategic_merge(obj, body, _group(obj["apiVersion"]) in BUILTIN_GROUPS)


def _containers(obj: dict) -> Iterable[dict]:
    def walk(node: Any) -> Iterable[dict]:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("containers", "initContainers") and isinstance(v, list):
                    yield from (c for c in v if isinstance(c, dict))
                else:
                    yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)
    return walk(obj.get("spec", {}))


def _split_image(image: str) -> tuple[str, str]:
    """'repo/name:tag@sha256:..' -> ('repo/name', ':tag@sha256:..')."""
    name, at, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon:] + at + digest
    return name, at + digest


def _apply_images(objects: list[dict], images: list[dict]) -> None:
    for spec in images:
        unknown = set(spec) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise RenderError(f"images fields {sorted(unknown)} are not supported")
        for obj in objects:
            for c in _containers(obj):
                if "image" not in c:
                    continue
                name, suffix = _split_image(c["image"])
                if name != spec["name"]:
                    continue
                new_name = spec.get("newName", name)
                if "digest" in spec:
                    suffix = "@" + spec["digest"]
                elif "newTag" in spec:
                    suffix = ":" + str(spec["newTag"])
                c["image"] = new_name + suffix


def render(directory: str) -> list[dict]:
    """Objects the kustomization in `directory` produces, in resource order."""
    kfile = _kustomization_file(directory)
    with open(kfile, encoding="utf-8") as f:
        k = yaml.safe_load(f) or {}
    unknown = set(k) - SUPPORTED_FIELDS
    if unknown:
        raise RenderError(f"{kfile}: fields {sorted(unknown)} are not supported by deploy/render.py")
    if k.get("kind", "Kustomization") != "Kustomization":
        raise RenderError(f"{kfile}: kind must be Kustomization")

    objects: list[dict] = []
    for res in k.get("resources", []):
        path = os.path.normpath(os.path.join(directory, res))
        if os.path.isdir(path):
            objects.extend(render(path))
        elif os.path.isfile(path):
            objects.extend(_load_yaml_documents(path))
        else:
            raise RenderError(f"{kfile}: resource {res!r} is neither a file nor a directory "
                              "(remote resources are not supported)")

    seen: set = set()
    for obj in objects:
        if _key(obj) in seen:
            raise RenderError(f"{kfile}: {obj['kind']}/{obj['metadata']['name']} appears twice")
        seen.add(_key(obj))

    for entry in k.get("patches", []):
        _apply_patch(objects, entry, directory)
    if "images" in k:
        _apply_images(objects, k["images"])
    if "namespace" in k:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED_KINDS:
                obj["metadata"]["namespace"] = k["namespace"]
    return objects


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        objects = render(argv[0])
    except RenderError as e:
        print(f"render: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=True, default_flow_style=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

