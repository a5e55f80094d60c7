"""Render the k8s/ kustomizations: `kubectl kustomize` when kubectl exists, else a small fallback renderer.

The fallback implements only the kustomize features k8s/ uses and fails loudly on anything else; when
kubectl exists, tests/k8s/test_render.py checks that both renderings agree, which keeps it honest.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
KUBECTL = shutil.which("kubectl")

# name -> kustomization folder (relative to k8s/); "prod+components" is prod plus every optional component.
TARGETS = {
    "base": "base",
    "dev": "overlays/dev",
    "prod": "overlays/prod",
    "istio": "overlays/istio",
    "prod+components": None,
    "monitoring": "monitoring",
}
WORKLOAD_TARGETS = [t for t in TARGETS if t != "monitoring"]
COMPONENTS = sorted(p.name for p in (K8S / "components").iterdir() if (p / "kustomization.yaml").is_file())


def load_yaml_docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _parse_env_file(path: Path) -> dict[str, str]:
    data: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        data[key] = value
    return data


def _match_label_selector(selector: str, labels: dict[str, str]) -> bool:
    for term in [t.strip() for t in re.split(r",(?![^()]*\))", selector) if t.strip()]:
        m = re.fullmatch(r"([\w./-]+)\s+in\s+\(([^)]*)\)", term)
        if m:
            if labels.get(m.group(1)) not in [v.strip() for v in m.group(2).split(",")]:
                return False
            continue
        key, sep, value = term.partition("=")
        if not sep:
            raise NotImplementedError(f"label selector term {term!r}")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def _matches_target(doc: dict[str, Any], target: dict[str, Any]) -> bool:
    unknown = set(target) - {"kind", "name", "labelSelector"}
    if unknown:
        raise NotImplementedError(f"patch target fields {unknown}")
    if "kind" in target and doc["kind"] != target["kind"]:
        return False
    if "name" in target and not re.fullmatch(target["name"], doc["metadata"]["name"]):
        return False
    if "labelSelector" in target:
        return _match_label_selector(target["labelSelector"], doc["metadata"].get("labels") or {})
    return True


def _pointer(path: str) -> list[str]:
    assert path.startswith("/"), path
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        kind = op["op"]
        if kind not in ("add", "replace", "remove"):
            raise NotImplementedError(f"JSON patch op {kind}")
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(idx, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[idx] = copy.deepcopy(op["value"])
            else:
                del parent[idx]
        else:
            if kind == "replace" and last not in parent:
                raise KeyError(f"replace of missing {op['path']}")
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(op["value"])


def pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec") or {}
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield spec["template"]["spec"]
    elif doc["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]


def templates(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec") or {}
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield spec["template"]
    elif doc["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]


def _rename_refs(docs: list[dict[str, Any]], renames: dict[tuple[str, str], str]) -> None:
    def ren(kind: str, name: str) -> str:
        return renames.get((kind, name), name)

    for doc in docs:
        for pod in pod_specs(doc):
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                for src in c.get("envFrom", []):
                    if "configMapRef" in src:
                        src["configMapRef"]["name"] = ren("ConfigMap", src["configMapRef"]["name"])
                    if "secretRef" in src:
                        src["secretRef"]["name"] = ren("Secret", src["secretRef"]["name"])
                for env in c.get("env", []):
                    ref = env.get("valueFrom") or {}
                    if "configMapKeyRef" in ref:
                        ref["configMapKeyRef"]["name"] = ren("ConfigMap", ref["configMapKeyRef"]["name"])
                    if "secretKeyRef" in ref:
                        ref["secretKeyRef"]["name"] = ren("Secret", ref["secretKeyRef"]["name"])
            for vol in pod.get("volumes", []):
                if "configMap" in vol:
                    vol["configMap"]["name"] = ren("ConfigMap", vol["configMap"]["name"])
                if "persistentVolumeClaim" in vol:
                    pvc = vol["persistentVolumeClaim"]
                    pvc["claimName"] = ren("PersistentVolumeClaim", pvc["claimName"])
            if "serviceAccountName" in pod:
                pod["serviceAccountName"] = ren("ServiceAccount", pod["serviceAccountName"])
        if doc["kind"] == "HorizontalPodAutoscaler":
            ref = doc["spec"]["scaleTargetRef"]
            ref["name"] = ren(ref["kind"], ref["name"])
        if doc["kind"] == "Ingress":
            for rule in doc["spec"].get("rules", []):
                for p in rule["http"]["paths"]:
                    svc = p["backend"]["service"]
                    svc["name"] = ren("Service", svc["name"])


def _add_labels(docs: list[dict[str, Any]], pairs: dict[str, str], selectors: bool) -> None:
    for doc in docs:
        doc["metadata"].setdefault("labels", {}).update(pairs)
        if not selectors:
            continue
        spec = doc.get("spec") or {}
        if doc["kind"] == "Service":
            spec.setdefault("selector", {}).update(pairs)
        if doc["kind"] in ("Deployment", "PodDisruptionBudget", "StatefulSet"):
            spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
        for tpl in templates(doc):
            tpl.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            for tsc in tpl["spec"].get("topologySpreadConstraints", []):
                tsc.setdefault("labelSelector", {}).setdefault("matchLabels", {}).update(pairs)


def _apply_kustomization(path: Path, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply one kustomization (or component) folder on top of `docs`; return the new list."""
    k = yaml.safe_load((path / "kustomization.yaml").read_text())
    supported = {
        "apiVersion",
        "kind",
        "namespace",
        "labels",
        "resources",
        "components",
        "configMapGenerator",
        "generatorOptions",
        "images",
        "patches",
        "nameSuffix",
    }
    unknown = set(k) - supported
    if unknown:
        raise NotImplementedError(f"{path}: kustomize fields not in the fallback renderer: {unknown}")
    docs = list(docs)
    for res in k.get("resources", []):
        target = (path / res).resolve()
        if target.is_dir():
            docs += _render_fallback(target)
        else:
            docs += load_yaml_docs(target.read_text())
    for comp in k.get("components", []):
        docs = _apply_kustomization((path / comp).resolve(), docs)
    gen_opts = k.get("generatorOptions") or {}
    for gen in k.get("configMapGenerator", []):
        data: dict[str, str] = {}
        for env in gen.get("envs", []):
            data.update(_parse_env_file(path / env))
        for lit in gen.get("literals", []):
            key, _, value = lit.partition("=")
            data[key] = value
        for spec in gen.get("files", []):
            key, sep, fname = spec.rpartition("=")
            fname = fname if sep else spec
            data[key if sep else Path(fname).name] = (path / fname).read_text()
        behavior = gen.get("behavior", "create")
        if behavior == "merge":
            matches = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == gen["name"]]
            assert len(matches) == 1, f"{path}: merge into unknown ConfigMap {gen['name']}"
            matches[0].setdefault("data", {}).update(data)
        else:
            meta: dict[str, Any] = {"name": gen["name"]}
            labels = {**(gen_opts.get("labels") or {}), **((gen.get("options") or {}).get("labels") or {})}
            if labels:
                meta["labels"] = labels
            docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    for patch in k.get("patches", []):
        if "path" in patch:
            raise NotImplementedError("patch files")
        body = yaml.safe_load(patch["patch"])
        if isinstance(body, dict):
            if body.get("$patch") != "delete":
                raise NotImplementedError("strategic merge patches other than $patch: delete")
            docs = [
                d for d in docs if not (d["kind"] == body["kind"] and d["metadata"]["name"] == body["metadata"]["name"])
            ]
            continue
        hits = [d for d in docs if _matches_target(d, patch["target"])]
        assert hits, f"{path}: patch target {patch['target']} matches nothing"
        for doc in hits:
            _json_patch(doc, body)
    if "namespace" in k:
        for doc in docs:
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = k["namespace"]
    if "nameSuffix" in k:
        renames: dict[tuple[str, str], str] = {}
        for doc in docs:
            new = doc["metadata"]["name"] + k["nameSuffix"]
            renames[(doc["kind"], doc["metadata"]["name"])] = new
            doc["metadata"]["name"] = new
        _rename_refs(docs, renames)
    for entry in k.get("labels", []):
        _add_labels(docs, entry["pairs"], bool(entry.get("includeSelectors")))
    for image in k.get("images", []):
        for doc in docs:
            for pod in pod_specs(doc):
                for c in pod.get("containers", []) + pod.get("initContainers", []):
                    if c["image"].split(":")[0] == image["name"]:
                        c["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def _render_fallback(path: Path) -> list[dict[str, Any]]:
    return _apply_kustomization(path, [])


def _components_kustomization(tmp: Path) -> Path:
    """A throw-away kustomization: the prod overlay plus every component in k8s/components/."""
    folder = tmp / "prod-components"
    folder.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(K8S, folder)
    listed = ", ".join(f"{rel}/components/{c}" for c in COMPONENTS)
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{rel}/overlays/prod]\ncomponents: [{listed}]\n"
    )
    return folder


def _strip_hashes(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """kubectl appends a content hash to generated ConfigMap names; drop it everywhere."""
    hashed = {
        d["metadata"]["name"]
        for d in docs
        if d["kind"] in ("ConfigMap", "Secret") and re.search(r"-[a-z0-9]{10}$", d["metadata"]["name"])
    }
    text = json.dumps(docs)
    for name in sorted(hashed, key=len, reverse=True):
        text = re.sub(rf'"{re.escape(name)}"', json.dumps(name[:-11]), text)
    result: list[dict[str, Any]] = json.loads(text)
    return result


def _render_kubectl(path: Path) -> list[dict[str, Any]]:
    assert KUBECTL
    out = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return load_yaml_docs(out.stdout)


_CACHE: dict[tuple[str, str], list[dict[str, Any]]] = {}


def render(target: str, tmp_root: Path, *, how: str | None = None) -> list[dict[str, Any]]:
    how = how or ("kubectl" if KUBECTL else "fallback")
    key = (target, how)
    if key not in _CACHE:
        sub = TARGETS[target]
        path = _components_kustomization(tmp_root) if sub is None else K8S / sub
        docs = _strip_hashes(_render_kubectl(path)) if how == "kubectl" else _render_fallback(path)
        _CACHE[key] = docs
    return copy.deepcopy(_CACHE[key])
