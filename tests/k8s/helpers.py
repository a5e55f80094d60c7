"""Queries over rendered manifests, shared by the tests/k8s/ modules (rendering is in render.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

SERVICES = ("detector", "embedder", "index", "gateway")
# Settings fields deliberately not in the ConfigMaps, with the reason. Everything else must be there.
NOT_IN_CONFIGMAP = {
    "admin_token": "a secret: env IMGSEARCH_ADMIN_TOKEN from Secret imgsearch-admin",
    "s3_endpoint_url": "boto3's AWS_ENDPOINT_URL in ConfigMap imgsearch-store serves every pod and the job",
    "nice": "a pod has its own CPU request and limit; niceness orders processes sharing one host (the local stack)",
    "score_threshold": "unset means the model card's own threshold",
    "static_dir": "the web page is packaged in the image",
}
# Non-IMGSEARCH keys allowed in the shared store ConfigMap: standard AWS SDK variables.
AWS_KEY = re.compile(r"^AWS_[A-Z0-9_]+$")
PLACEHOLDER_SECRET_VALUES = {
    "REPLACE_ME",
    "imgsearch-dev",
    "imgsearch-dev-not-secret",
    "dev-admin-token-not-secret-0000",
}


def templates(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod template of a workload (nothing for other kinds)."""
    spec = doc.get("spec") or {}
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield spec["template"]
    elif doc["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]


def pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod spec of a workload (nothing for other kinds)."""
    for template in templates(doc):
        yield template["spec"]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def label_selector_matches(sel: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector_matches(sel.get("matchLabels") or {}, labels):
        return False
    for expr in sel.get("matchExpressions") or []:
        value = labels.get(expr["key"])
        op = expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def pod_template_labels(docs: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [tpl["metadata"].get("labels") or {} for d in docs for tpl in templates(d)]


def quantity(q: str | int | float) -> float:
    """Kubernetes quantity -> float (cores or bytes)."""
    s = str(q)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, mult in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mult
    return float(s)


def settings_configmaps(docs: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, str]]]:
    """ConfigMap name -> (service, data) for the per-service settings ConfigMaps (canary ones too)."""
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for cm in by_kind(docs, "ConfigMap"):
        m = re.fullmatch(r"imgsearch-(detector|embedder|index|gateway)(-canary)?", cm["metadata"]["name"])
        if m:
            out[cm["metadata"]["name"]] = (m.group(1), cm.get("data") or {})
    return out


def env_of(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps and literal env (not Secrets)."""
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            env.update(named(docs, "ConfigMap", src["configMapRef"]["name"]).get("data") or {})
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            env[e["name"]] = named(docs, "ConfigMap", ref["name"])["data"][ref["key"]]
        if (e.get("valueFrom") or {}).get("fieldRef"):  # set from the pod by the kubelet: a stand-in value
            env[e["name"]] = "from-the-pod"
    return env


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job", "CronJob", "StatefulSet", "DaemonSet")]
