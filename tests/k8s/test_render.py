"""Every kustomization renders, and every object validates strictly against the Kubernetes 1.30 schemas.

`kubernetes-validate --strict` (a CI dependency: missing, these tests fail). CRDs such as Istio's or the
Prometheus Operator's have no schema there and are checked structurally by the other modules instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate as kv
import pytest

from tests.k8s.render import K8S, REPO, TARGETS, load_yaml_docs, render

KUBE_VERSION = "1.30.0"
CRD_GROUPS = ("networking.istio.io/", "monitoring.coreos.com/")


def _validate(doc: dict[str, Any], where: str) -> bool:
    """Validate one object strictly; False for a CRD kind the schemas do not know."""
    if doc["apiVersion"].startswith(CRD_GROUPS):
        return False
    try:
        kv.validate(doc, KUBE_VERSION, strict=True)
    except kv.ValidationError as exc:
        raise AssertionError(f"{where}: {doc['kind']}/{doc['metadata'].get('name')}: {exc.message}") from exc
    return True


@pytest.mark.parametrize("target", list(TARGETS))
def test_renders_and_validates_strictly(target: str, tmp_root: Path) -> None:
    docs = render(target, tmp_root)
    assert docs
    assert sum(_validate(doc, target) for doc in docs)


def test_base_files_validate_without_kustomize() -> None:
    """Every plain manifest file, as written (no kustomization, no monitoring CRDs or rule files)."""
    files = [
        p
        for p in K8S.rglob("*.yaml")
        if p.name != "kustomization.yaml" and "monitoring" not in p.parts and p.name != "alerts.rules.yaml"
    ]
    assert len(files) > 10
    for path in files:
        for doc in load_yaml_docs(path.read_text()):
            _validate(doc, str(path.relative_to(REPO)))
