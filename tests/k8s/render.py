"""Render the k8s/ kustomizations with `kubectl kustomize` (scripts/setup-test-env.sh installs kubectl)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
# The wheel the setup script installs where the machine has no usable kubectl lands beside this Python.
KUBECTL = shutil.which("kubectl", path=sysconfig.get_path("scripts")) or shutil.which("kubectl")

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


def _kustomize(path: Path) -> list[dict[str, Any]]:
    assert KUBECTL, "kubectl not found: scripts/setup-test-env.sh installs it"
    out = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return load_yaml_docs(out.stdout)


_CACHE: dict[str, list[dict[str, Any]]] = {}


def render(target: str, tmp_root: Path) -> list[dict[str, Any]]:
    """The objects of one of TARGETS, generated names without their hash (a fresh copy: tests may edit it)."""
    if target not in _CACHE:
        sub = TARGETS[target]
        path = _components_kustomization(tmp_root) if sub is None else K8S / sub
        _CACHE[target] = _strip_hashes(_kustomize(path))
    return copy.deepcopy(_CACHE[target])
