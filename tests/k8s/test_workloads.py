"""Workload invariants: locked-down, bounded and probed containers; selectors, ports and references line up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.k8s.helpers import (
    SERVICES,
    by_kind,
    env_of,
    label_selector_matches,
    named,
    pod_specs,
    pod_template_labels,
    quantity,
    selector_matches,
    workloads,
)
from tests.k8s.render import REPO, WORKLOAD_TARGETS, render


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_containers_are_probed_bounded_and_locked_down(target: str, tmp_root: Path) -> None:
    docs = render(target, tmp_root)
    for doc in workloads(docs):
        where = f"{target}: {doc['kind']}/{doc['metadata']['name']}"
        for pod in pod_specs(doc):
            psc = pod.get("securityContext") or {}
            assert (psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", where
            assert pod.get("automountServiceAccountToken") is False, where
            assert pod.get("enableServiceLinks") is False, f"{where}: service links clash with IMGSEARCH_* env"
            assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), where
            for c in pod["containers"] + pod.get("initContainers", []):
                cw = f"{where} container {c['name']}"
                csc = c.get("securityContext") or {}
                assert csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, cw
                uid = csc.get("runAsUser", psc.get("runAsUser"))
                assert uid is not None and uid > 0, f"{cw}: fixed non-zero UID"
                assert csc.get("readOnlyRootFilesystem") is True, cw
                assert csc.get("allowPrivilegeEscalation") is False, cw
                assert csc.get("capabilities", {}).get("drop") == ["ALL"], cw
                assert not csc.get("capabilities", {}).get("add"), cw
                assert not csc.get("privileged"), cw
                res = c.get("resources") or {}
                for part in ("requests", "limits"):
                    for r in ("cpu", "memory"):
                        assert r in (res.get(part) or {}), f"{cw}: resources.{part}.{r}"
                for r in ("cpu", "memory"):
                    assert quantity(res["requests"][r]) <= quantity(res["limits"][r]), f"{cw}: {r} request > limit"
                assert ":" in c["image"] and not c["image"].endswith(":latest"), f"{cw}: pinned image tag"
                if doc["kind"] == "Deployment":
                    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
                    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                        assert probe in c, f"{cw}: {probe}"
                        port = c[probe]["httpGet"]["port"]
                        assert port in ports or port in ports.values(), f"{cw}: {probe} port {port}"


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_imgsearch_probes_use_livez_and_readyz(target: str, tmp_root: Path) -> None:
    docs = render(target, tmp_root)
    deployments = [
        d for d in by_kind(docs, "Deployment") if d["metadata"]["labels"].get("app.kubernetes.io/component") in SERVICES
    ]
    assert len(deployments) >= 4
    for d in deployments:
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
        # startup on /livez, never /readyz: an index service waiting for its first index must not be killed.
        assert c["startupProbe"]["httpGet"]["path"] == "/livez"
        budget = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
        assert budget >= 120, f"{d['metadata']['name']}: startup budget {budget}s is too short for model pulls"


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_selectors_labels_and_ports_line_up(target: str, tmp_root: Path) -> None:
    docs = render(target, tmp_root)
    templates = pod_template_labels(docs)
    deployments = by_kind(docs, "Deployment")
    for d in deployments:
        name = d["metadata"]["name"]
        tpl = d["spec"]["template"]
        labels = tpl["metadata"]["labels"]
        assert selector_matches(d["spec"]["selector"]["matchLabels"], labels), name
        for tsc in tpl["spec"].get("topologySpreadConstraints", []):
            assert label_selector_matches(tsc["labelSelector"], labels), f"{name}: topology spread selector"
        others = [o for o in deployments if o is not d]
        for o in others:  # no two Deployments may claim each other's pods
            other_labels = o["spec"]["template"]["metadata"]["labels"]
            assert not selector_matches(d["spec"]["selector"]["matchLabels"], other_labels), (
                f"{name} selects pods of {o['metadata']['name']}"
            )
        ann = tpl["metadata"].get("annotations") or {}
        if ann.get("prometheus.io/scrape") == "true":
            ports = [p["containerPort"] for p in tpl["spec"]["containers"][0]["ports"]]
            assert int(ann["prometheus.io/port"]) in ports, f"{name}: scrape port"
    for svc in by_kind(docs, "Service"):
        sel = svc["spec"]["selector"]
        pods = [d for d in deployments if selector_matches(sel, d["spec"]["template"]["metadata"]["labels"])]
        assert pods, f"{target}: Service {svc['metadata']['name']} selects no pods"
        for d in pods:
            container_ports = {
                (p["name"], p["containerPort"])
                for c in d["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])
            }
            for port in svc["spec"]["ports"]:
                tp = port.get("targetPort", port["port"])
                assert any(tp in pair for pair in container_ports), (
                    f"Service {svc['metadata']['name']} targetPort {tp} not a port of {d['metadata']['name']}"
                )
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        assert any(label_selector_matches(pdb["spec"]["selector"], t) for t in templates), pdb["metadata"]["name"]
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target_dep = named(docs, ref["kind"], ref["name"])
        assert "replicas" not in target_dep["spec"], f"{ref['name']}: the HPA owns replicas; apply would reset them"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for ing in by_kind(docs, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                backend = p["backend"]["service"]
                svc = named(docs, "Service", backend["name"])
                assert backend["port"].get("name") in [sp.get("name") for sp in svc["spec"]["ports"]] or backend[
                    "port"
                ].get("number") in [sp["port"] for sp in svc["spec"]["ports"]]
    for np_ in by_kind(docs, "NetworkPolicy"):
        sel = np_["spec"]["podSelector"]
        if sel:
            assert any(label_selector_matches(sel, t) for t in templates), f"NetworkPolicy {np_['metadata']['name']}"


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_every_reference_resolves(target: str, tmp_root: Path) -> None:
    docs = render(target, tmp_root)
    have = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for doc in workloads(docs):
        for pod in pod_specs(doc):
            if "serviceAccountName" in pod:
                assert ("ServiceAccount", pod["serviceAccountName"]) in have
            for c in pod["containers"]:
                for src in c.get("envFrom", []):
                    for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                        if key in src and not src[key].get("optional"):
                            assert (kind, src[key]["name"]) in have, f"{doc['metadata']['name']}: {src}"
                for e in c.get("env", []):
                    ref = e.get("valueFrom") or {}
                    if "configMapKeyRef" in ref:
                        cm = named(docs, "ConfigMap", ref["configMapKeyRef"]["name"])
                        assert ref["configMapKeyRef"]["key"] in cm["data"]
                    if "secretKeyRef" in ref and not ref["secretKeyRef"].get("optional"):
                        assert ("Secret", ref["secretKeyRef"]["name"]) in have, f"{doc['metadata']['name']}: {e}"
            for vol in pod.get("volumes", []):
                if "persistentVolumeClaim" in vol:
                    assert ("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"]) in have


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_disk_and_shutdown_budgets(target: str, tmp_root: Path) -> None:
    docs = render(target, tmp_root)
    for doc in workloads(docs):
        for pod in pod_specs(doc):
            name = doc["metadata"]["name"]
            disk = sum(
                quantity(v["emptyDir"].get("sizeLimit", 0))
                for v in pod.get("volumes", [])
                if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory"
            )
            limit = sum(
                quantity((c.get("resources") or {}).get("limits", {}).get("ephemeral-storage", 0))
                for c in pod["containers"]
            )
            assert disk <= limit, f"{target}: {name}: emptyDirs {disk} > ephemeral-storage limit {limit}"
            for c in pod["containers"]:
                mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
                assert "/tmp" in mounts, f"{name}: read-only root fs needs a writable /tmp"
                env = env_of(c, docs)
                grace_key = [k for k in env if k.endswith("_GRACEFUL_SHUTDOWN_S")]
                if grace_key and doc["kind"] == "Deployment":
                    pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
                    pre_s = float(pre[1]) if pre[:1] == ["sleep"] else 0.0
                    need = pre_s + float(env[grace_key[0]]) + 5
                    assert pod.get("terminationGracePeriodSeconds", 30) >= need, f"{name}: grace period"
                intra = [k for k in env if k.endswith("_ORT_INTRA_THREADS")]
                if intra:
                    workers = [k for k in env if k.endswith("_INFERENCE_THREADS")]
                    threads = int(env[intra[0]]) * (int(env[workers[0]]) if workers else 1)
                    cpu = quantity(c["resources"]["limits"]["cpu"])
                    assert threads <= max(1, cpu), f"{name}: {threads} onnxruntime threads on {cpu} CPUs"


def test_image_uid_matches_manifests(tmp_root: Path) -> None:
    text = (REPO / "Dockerfile").read_text()
    uid = int(re.search(r"^ARG UID=(\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    for target in WORKLOAD_TARGETS:
        for doc in workloads(render(target, tmp_root)):
            for pod in pod_specs(doc):
                if any(c["image"].startswith("registry.example.com/imgsearch/") for c in pod["containers"]):
                    assert pod["securityContext"]["runAsUser"] == uid, doc["metadata"]["name"]
                    assert pod["securityContext"].get("fsGroup", uid) == uid
