"""What each overlay exposes: the admin token reaches only the index pods, and the public entry (nginx Ingress,
or Istio's public gateway) routes only the public API and page, never /metrics, /readyz, /livez, /docs or
/openapi.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.k8s.helpers import by_kind, pod_specs, workloads
from tests.k8s.render import WORKLOAD_TARGETS, render

ADMIN_SECRET = "imgsearch-admin"
PUBLIC_PATHS = {("/", "Exact"), ("/v1/", "Prefix"), ("/static/", "Prefix")}
REACHABLE = ["/", "/v1/search", "/v1/items/fmnist-train-00007/image", "/v1/items/a/similar", "/static/main.js"]
HIDDEN = ["/metrics", "/readyz", "/livez", "/docs", "/openapi.json", "/admin/reload", "/redoc", "/v1x", "/staticx"]


def _secret_refs(pod: dict[str, Any]) -> set[str]:
    """Every Secret a pod spec names: env, envFrom and volumes."""
    names: set[str] = set()
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for e in container.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        names |= {src["secretRef"]["name"] for src in container.get("envFrom", []) if "secretRef" in src}
    names |= {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    return names


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_only_index_pods_get_the_admin_token(target: str, tmp_root: Path) -> None:
    docs = render(target, tmp_root)
    holders = {
        f"{d['kind']}/{d['metadata']['name']}"
        for d in workloads(docs)
        if any(ADMIN_SECRET in _secret_refs(pod) for pod in pod_specs(d))
    }
    index_deployments = {
        f"Deployment/{d['metadata']['name']}"
        for d in by_kind(docs, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "index"
    }
    assert index_deployments, target
    assert holders == index_deployments, f"{target}: {sorted(holders)}"


def _k8s_path_matches(path: str, kind: str, request: str) -> bool:
    """Ingress path semantics: Exact is string equality, Prefix compares `/`-separated elements."""
    if kind == "Exact":
        return request == path
    want = [p for p in path.split("/") if p]
    return [p for p in request.split("/") if p][: len(want)] == want


@pytest.mark.parametrize("target", [t for t in WORKLOAD_TARGETS if t != "istio"])
def test_ingress_routes_only_the_public_api_and_page(target: str, tmp_root: Path) -> None:
    ingresses = by_kind(render(target, tmp_root), "Ingress")
    assert ingresses, target
    for ing in ingresses:
        for rule in ing["spec"]["rules"]:
            paths = rule["http"]["paths"]
            assert {(p["path"], p["pathType"]) for p in paths} == PUBLIC_PATHS, f"{target}: {paths}"
            assert {p["backend"]["service"]["name"] for p in paths} == {"imgsearch-gateway"}
            for request in REACHABLE:
                assert any(_k8s_path_matches(p["path"], p["pathType"], request) for p in paths), request
            for request in HIDDEN:
                assert not any(_k8s_path_matches(p["path"], p["pathType"], request) for p in paths), request


def _istio_routes(vs: dict[str, Any], gateway: str, request: str) -> bool:
    """Whether any rule of the VirtualService matches `request` from `gateway` (headers ignored: a caller
    can always send them)."""
    for http in vs["spec"]["http"]:
        for match in http.get("match") or [{}]:
            if gateway not in match.get("gateways", vs["spec"].get("gateways", [])):
                continue
            uri = match.get("uri")
            if uri is None or request == uri.get("exact") or request.startswith(uri.get("prefix", "\0")):
                assert uri is None or set(uri) <= {"exact", "prefix"}, uri
                return True
    return False


def test_istio_public_gateway_routes_only_the_public_api_and_page(tmp_root: Path) -> None:
    public = [
        vs
        for vs in by_kind(render("istio", tmp_root), "VirtualService")
        if "imgsearch-public" in vs["spec"]["gateways"]
    ]
    assert public
    for vs in public:
        for request in REACHABLE:
            assert _istio_routes(vs, "imgsearch-public", request), request
            assert _istio_routes(vs, "mesh", request), request
        for request in HIDDEN:
            assert not _istio_routes(vs, "imgsearch-public", request), request
        assert _istio_routes(vs, "mesh", "/readyz")  # in-cluster callers keep every path
