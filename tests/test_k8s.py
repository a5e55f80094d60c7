"""Kubernetes manifests (k8s/): render every overlay, validate strictly, and check the deploy invariants.

Rendering uses `kubectl kustomize` when kubectl exists; otherwise a small renderer below that implements
only the kustomize features k8s/ uses (and fails loudly on anything else). When kubectl exists, a test
checks that both renderings agree, which keeps the fallback honest. Schemas: `kubernetes-validate
--strict` for Kubernetes 1.30 (CRDs such as Istio or the Prometheus Operator have no schema there and are
checked structurally instead). Settings keys are compared with services/settings.py at test time.
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

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "k8s"
KUBE_VERSION = "1.30.0"
KUBECTL = shutil.which("kubectl")
PROMTOOL = shutil.which("promtool")

# name -> kustomization folder (relative to k8s/); "prod+sharded" adds the sharded-rebuild component.
TARGETS = {
    "base": "base",
    "dev": "overlays/dev",
    "prod": "overlays/prod",
    "istio": "overlays/istio",
    "prod+sharded": None,
    "monitoring": "monitoring",
}
WORKLOAD_TARGETS = [t for t in TARGETS if t != "monitoring"]
CRD_GROUPS = ("networking.istio.io/", "monitoring.coreos.com/")
SERVICES = ("detector", "embedder", "index", "gateway")

# Settings fields deliberately not in the ConfigMaps, with the reason. Everything else must be there.
NOT_IN_CONFIGMAP = {
    "admin_token": "a secret: env IMGSEARCH_ADMIN_TOKEN from Secret imgsearch-admin",
    "s3_endpoint_url": "boto3's AWS_ENDPOINT_URL in ConfigMap imgsearch-store serves every pod and the job",
    "score_threshold": "unset means the model card's own threshold",
    "static_dir": "the web page is packaged in the image",
}
# Non-IMGSEARCH keys allowed in the shared store ConfigMap: standard AWS SDK variables.
AWS_KEY = re.compile(r"^AWS_[A-Z0-9_]+$")
PLACEHOLDER_SECRET_VALUES = {"REPLACE_ME", "imgsearch-dev", "imgsearch-dev-not-secret", "dev-admin-token"}


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------

def _load_yaml_docs(text: str) -> list[dict[str, Any]]:
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


def _pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec") or {}
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield spec["template"]["spec"]
    elif doc["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]


def _templates(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec") or {}
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield spec["template"]
    elif doc["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]


def _rename_refs(docs: list[dict[str, Any]], renames: dict[tuple[str, str], str]) -> None:
    def ren(kind: str, name: str) -> str:
        return renames.get((kind, name), name)

    for doc in docs:
        for pod in _pod_specs(doc):
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
        for tpl in _templates(doc):
            tpl.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            for tsc in tpl["spec"].get("topologySpreadConstraints", []):
                tsc.setdefault("labelSelector", {}).setdefault("matchLabels", {}).update(pairs)


def _apply_kustomization(path: Path, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply one kustomization (or component) folder on top of `docs`; return the new list."""
    k = yaml.safe_load((path / "kustomization.yaml").read_text())
    supported = {
        "apiVersion", "kind", "namespace", "labels", "resources", "components", "configMapGenerator",
        "generatorOptions", "images", "patches", "nameSuffix",
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
            docs += _load_yaml_docs(target.read_text())
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
                d for d in docs
                if not (d["kind"] == body["kind"] and d["metadata"]["name"] == body["metadata"]["name"])
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
            for pod in _pod_specs(doc):
                for c in pod.get("containers", []) + pod.get("initContainers", []):
                    if c["image"].split(":")[0] == image["name"]:
                        c["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def _render_fallback(path: Path) -> list[dict[str, Any]]:
    return _apply_kustomization(path, [])


def _sharded_kustomization(tmp: Path) -> Path:
    """A throw-away kustomization: the prod overlay plus the sharded-rebuild component."""
    folder = tmp / "prod-sharded"
    folder.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(K8S, folder)
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{rel}/overlays/prod]\ncomponents: [{rel}/components/sharded-rebuild]\n"
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
    return _load_yaml_docs(out.stdout)


_CACHE: dict[tuple[str, str], list[dict[str, Any]]] = {}


def render(target: str, tmp_root: Path, *, how: str | None = None) -> list[dict[str, Any]]:
    how = how or ("kubectl" if KUBECTL else "fallback")
    key = (target, how)
    if key not in _CACHE:
        sub = TARGETS[target]
        path = _sharded_kustomization(tmp_root) if sub is None else K8S / sub
        docs = _strip_hashes(_render_kubectl(path)) if how == "kubectl" else _render_fallback(path)
        _CACHE[key] = docs
    return copy.deepcopy(_CACHE[key])


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("k8s")


# --------------------------------------------------------------------------------------------------
# Helpers over rendered documents
# --------------------------------------------------------------------------------------------------

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
    return [tpl["metadata"].get("labels") or {} for d in docs for tpl in _templates(d)]


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
    return env


def settings_env_names() -> dict[str, dict[str, str]]:
    """service -> {ENV_NAME: field} as pydantic-settings reads them (prefix + field, or the alias)."""
    settings = pytest.importorskip("services.settings")
    from pydantic import AliasChoices

    out: dict[str, dict[str, str]] = {}
    for service, cls in settings.SETTINGS_CLASSES.items():
        prefix = cls.model_config.get("env_prefix", "")
        names: dict[str, str] = {}
        for field_name, field in cls.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                envs = [c for c in alias.choices if isinstance(c, str)]
            elif isinstance(alias, str):
                envs = [alias]
            else:
                envs = [f"{prefix}{field_name}"]
            for env in envs:
                names[env.upper()] = field_name
        out[service] = names
    return out


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job", "CronJob", "StatefulSet", "DaemonSet")]


# --------------------------------------------------------------------------------------------------
# Rendering and schema validation
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", list(TARGETS))
def test_renders_and_validates_strictly(target: str, tmp_root: Path) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = render(target, tmp_root)
    assert docs
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        try:
            kv.validate(doc, KUBE_VERSION, strict=True)
        except kv.ValidationError as exc:
            raise AssertionError(f"{target}: {doc['kind']}/{doc['metadata']['name']}: {exc.message}") from exc
        checked += 1
    assert checked


def test_base_files_validate_without_kustomize() -> None:
    """What CI can always check, kubectl or not: every plain manifest file, as written."""
    kv = pytest.importorskip("kubernetes_validate")
    files = [p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml" and "monitoring" not in p.parts
             and p.name != "alerts.rules.yaml"]
    assert len(files) > 10
    for path in files:
        for doc in _load_yaml_docs(path.read_text()):
            if doc["apiVersion"].startswith(CRD_GROUPS):
                continue
            try:
                kv.validate(doc, KUBE_VERSION, strict=True)
            except kv.ValidationError as exc:
                raise AssertionError(f"{path.relative_to(REPO)}: {doc['kind']}: {exc.message}") from exc


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed: the fallback renderer is used alone")
@pytest.mark.parametrize("target", list(TARGETS))
def test_fallback_renderer_agrees_with_kubectl(target: str, tmp_root: Path) -> None:
    def index(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}

    real = index(render(target, tmp_root, how="kubectl"))
    mine = index(render(target, tmp_root, how="fallback"))
    assert sorted(real) == sorted(mine)
    for key, doc in real.items():
        assert mine[key] == doc, f"{target}: {key} differs between kubectl and the fallback renderer"


# --------------------------------------------------------------------------------------------------
# Workload invariants
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_containers_are_probed_bounded_and_locked_down(target: str, tmp_root: Path) -> None:
    docs = render(target, tmp_root)
    for doc in workloads(docs):
        where = f"{target}: {doc['kind']}/{doc['metadata']['name']}"
        for pod in _pod_specs(doc):
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
    deployments = [d for d in by_kind(docs, "Deployment")
                   if d["metadata"]["labels"].get("app.kubernetes.io/component") in SERVICES]
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
            container_ports = {(p["name"], p["containerPort"]) for c in d["spec"]["template"]["spec"]["containers"]
                               for p in c.get("ports", [])}
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
                assert backend["port"].get("name") in [sp.get("name") for sp in svc["spec"]["ports"]] or \
                    backend["port"].get("number") in [sp["port"] for sp in svc["spec"]["ports"]]
    for np_ in by_kind(docs, "NetworkPolicy"):
        sel = np_["spec"]["podSelector"]
        if sel:
            assert any(label_selector_matches(sel, t) for t in templates), f"NetworkPolicy {np_['metadata']['name']}"


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_every_reference_resolves(target: str, tmp_root: Path) -> None:
    docs = render(target, tmp_root)
    have = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for doc in workloads(docs):
        for pod in _pod_specs(doc):
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
        for pod in _pod_specs(doc):
            name = doc["metadata"]["name"]
            disk = sum(quantity(v["emptyDir"].get("sizeLimit", 0)) for v in pod.get("volumes", [])
                       if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory")
            limit = sum(quantity((c.get("resources") or {}).get("limits", {}).get("ephemeral-storage", 0))
                        for c in pod["containers"])
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


# --------------------------------------------------------------------------------------------------
# Settings: ConfigMap keys == what services/settings.py reads
# --------------------------------------------------------------------------------------------------

def test_settings_exclusions_are_real_fields() -> None:
    names = settings_env_names()
    fields = {f for envs in names.values() for f in envs.values()}
    stale = set(NOT_IN_CONFIGMAP) - fields
    assert not stale, f"NOT_IN_CONFIGMAP lists fields that no longer exist: {stale}"


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_configmap_keys_match_settings(target: str, tmp_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_names = settings_env_names()
    settings = pytest.importorskip("services.settings")
    cms = settings_configmaps(render(target, tmp_root))
    assert {svc for svc, _ in cms.values()} == set(SERVICES), f"{target}: a service has no settings ConfigMap"
    for cm_name, (service, data) in cms.items():
        known = env_names[service]
        expected = {env for env, fld in known.items() if fld not in NOT_IN_CONFIGMAP}
        orphans = sorted(set(data) - set(known))
        missing = sorted(expected - set(data))
        excluded_present = sorted(k for k in data if k in known and known[k] in NOT_IN_CONFIGMAP)
        assert not orphans, f"{target}: {cm_name}: keys no settings field reads: {orphans}"
        assert not missing, f"{target}: {cm_name}: settings fields without a key: {missing}"
        assert not excluded_present, f"{target}: {cm_name}: keys that belong elsewhere: {excluded_present}"
        # The values must validate: construct the settings class from exactly this environment.
        for var in list(os.environ):
            if var.startswith("IMGSEARCH_"):
                monkeypatch.delenv(var)
        for key, value in data.items():
            monkeypatch.setenv(key, value)
        parsed = settings.SETTINGS_CLASSES[service]()
        assert parsed.host == "0.0.0.0", f"{cm_name}: must listen on all interfaces in a pod"


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_settings_agree_with_pods_and_each_other(target: str, tmp_root: Path) -> None:
    docs = render(target, tmp_root)
    cms = settings_configmaps(docs)
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    for d in by_kind(docs, "Deployment"):
        component = d["metadata"]["labels"].get("app.kubernetes.io/component")
        if component not in SERVICES:
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        env = env_of(c, docs)
        prefix = f"IMGSEARCH_{component.upper()}_"
        assert c["args"][:2] == ["serve", component], d["metadata"]["name"]
        assert [p["containerPort"] for p in c["ports"]] == [int(env[prefix + "PORT"])], d["metadata"]["name"]
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        for key in ("MODEL_CACHE_DIR", "LOCAL_DIR"):
            if prefix + key in env:
                assert env[prefix + key] in mounts, f"{d['metadata']['name']}: {key} is not a mounted volume"
        if component == "gateway":
            for backend in ("DETECTOR", "EMBEDDER", "INDEX"):
                m = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", env[f"{prefix}{backend}_URL"])
                assert m, env[f"{prefix}{backend}_URL"]
                svc = services.get(m.group(1))
                assert svc, f"{d['metadata']['name']}: no Service {m.group(1)}"
                assert int(m.group(2)) in [p["port"] for p in svc["spec"]["ports"]]
    # An index is bound to its embedder: the pins must agree on every track.
    for suffix in ("", "-canary"):
        if f"imgsearch-index{suffix}" not in cms:
            continue
        index = cms[f"imgsearch-index{suffix}"][1]
        embedder = cms[f"imgsearch-embedder{suffix}"][1]
        assert index["IMGSEARCH_INDEX_EMBEDDER_SHA256"] == embedder["IMGSEARCH_EMBEDDER_MODEL_SHA256"], (
            f"{target}: index{suffix} pins another embedder than embedder{suffix} serves"
        )
        for sha in (index["IMGSEARCH_INDEX_EMBEDDER_SHA256"], embedder["IMGSEARCH_EMBEDDER_MODEL_SHA256"]):
            assert re.fullmatch(r"[0-9a-f]{64}", sha)


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_model_pins_match_the_repository_cards(target: str, tmp_root: Path) -> None:
    """Stable tracks pin the models of this checkout (models/<name>/card.json); the canary pins a candidate."""
    cms = settings_configmaps(render(target, tmp_root))
    checked = 0
    for service in ("detector", "embedder"):
        data = cms[f"imgsearch-{service}"][1]
        prefix = f"IMGSEARCH_{service.upper()}_"
        name = data[prefix + "MODEL_URI"].rstrip("/").rsplit("/", 1)[-1]
        card_path = REPO / "models" / name / "card.json"
        if not card_path.is_file():
            continue
        card = json.loads(card_path.read_text())
        assert data[prefix + "MODEL_SHA256"] == card["sha256"], (
            f"{target}: {prefix}MODEL_SHA256 is not the sha256 of {card_path.relative_to(REPO)}: update "
            f"k8s/base/{service}/{service}.env (and IMGSEARCH_INDEX_EMBEDDER_SHA256 for the embedder)"
        )
        if service == "embedder":
            dim = card.get("output", {}).get("dim")
            assert dim is None or int(cms["imgsearch-index"][1]["IMGSEARCH_INDEX_DIM"]) == dim
        checked += 1
    assert checked or not (REPO / "models").is_dir()


def test_store_configmap_holds_only_aws_sdk_settings(tmp_root: Path) -> None:
    for target in WORKLOAD_TARGETS:
        docs = render(target, tmp_root)
        data = named(docs, "ConfigMap", "imgsearch-store")["data"]
        assert all(AWS_KEY.match(k) for k in data), f"{target}: {sorted(data)}"
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(data), "credentials belong in a Secret"


def test_no_real_secrets_committed(tmp_root: Path) -> None:
    for target in WORKLOAD_TARGETS:
        for secret in by_kind(render(target, tmp_root), "Secret"):
            values = {**(secret.get("stringData") or {}), **(secret.get("data") or {})}
            assert set(values.values()) <= PLACEHOLDER_SECRET_VALUES, f"{target}: {secret['metadata']['name']}"
    assert not by_kind(render("prod", tmp_root), "Secret"), "prod Secrets are created out of band"


def test_overlay_specifics(tmp_root: Path) -> None:
    dev = render("dev", tmp_root)
    assert all(h["spec"]["minReplicas"] == 1 for h in by_kind(dev, "HorizontalPodAutoscaler"))
    assert named(dev, "ConfigMap", "imgsearch-store")["data"]["AWS_ENDPOINT_URL"].startswith("http://imgsearch-model-store")
    named(dev, "Deployment", "imgsearch-model-store")
    prod = render("prod", tmp_root)
    assert "AWS_ENDPOINT_URL" not in named(prod, "ConfigMap", "imgsearch-store")["data"]
    assert all(h["spec"]["minReplicas"] >= 3 for h in by_kind(prod, "HorizontalPodAutoscaler"))
    for name in ("imgsearch-detector", "imgsearch-embedder"):
        vols = named(prod, "Deployment", name)["spec"]["template"]["spec"]["volumes"]
        assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "imgsearch-model-cache" for v in vols)
        res = named(prod, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert res["requests"] == res["limits"], f"{name}: Guaranteed QoS in prod"
    for cm_name, (_, data) in settings_configmaps(prod).items():
        for key, value in data.items():
            if key.endswith("_URI"):
                assert value.startswith("s3://"), f"prod {cm_name}: {key}={value}"
    istio = render("istio", tmp_root)
    assert not by_kind(istio, "Ingress"), "Istio's gateway replaces the Ingress (it would bypass routing)"
    vs = named(istio, "VirtualService", "imgsearch-gateway")
    dr = named(istio, "DestinationRule", "imgsearch-gateway")
    subsets = {s["name"]: s["labels"] for s in dr["spec"]["subsets"]}
    gateway_pods = [d["spec"]["template"]["metadata"]["labels"] for d in by_kind(istio, "Deployment")
                    if d["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"]
    for labels in subsets.values():
        assert sum(selector_matches(labels, p) for p in gateway_pods) == 1, "each subset = one gateway Deployment"
    routes = [r for http in vs["spec"]["http"] for r in http["route"]]
    assert {r["destination"]["subset"] for r in routes} <= set(subsets)
    default = vs["spec"]["http"][-1]
    assert sum(r.get("weight", 100) for r in default["route"]) == 100
    assert default["mirror"]["subset"] in subsets
    svc = named(istio, "Service", "imgsearch-gateway")
    assert all(selector_matches(svc["spec"]["selector"], p) for p in gateway_pods), "subsets need one Service"


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_job_commands_parse_with_the_real_cli(target: str, tmp_root: Path) -> None:
    """Container args, with $(VAR) expanded from the ConfigMaps, are accepted by `imgsearch`'s parser."""
    cli = pytest.importorskip("services.cli")
    parser = cli.build_parser()
    docs = render(target, tmp_root)
    for doc in workloads(docs):
        for pod in _pod_specs(doc):
            for c in pod["containers"]:
                if not c["image"].startswith("registry.example.com/imgsearch/") or "command" in c:
                    continue
                env = {**env_of(c, docs), "JOB_COMPLETION_INDEX": "0"}
                args = [re.sub(r"\$\((\w+)\)", lambda m, e=env: e[m.group(1)], a) for a in c["args"]]
                if any(a.startswith(("--shard=", "--merge-shards=")) for a in args):
                    sub = parser._subparsers._group_actions[0].choices["index"]  # type: ignore[union-attr]
                    build = sub._subparsers._group_actions[0].choices["build"]  # type: ignore[union-attr]
                    flags = {o for a in build._actions for o in a.option_strings}
                    if not {"--shard", "--merge-shards"} <= flags:
                        pytest.skip("`imgsearch index build --shard/--merge-shards` is not wired up yet")
                try:
                    parser.parse_args(args)
                except SystemExit as exc:
                    raise AssertionError(f"{target}: {doc['metadata']['name']}: imgsearch {' '.join(args)}") from exc


def test_rebuild_cronjobs(tmp_root: Path) -> None:
    docs = render("prod+sharded", tmp_root)
    cronjobs = {c["metadata"]["name"]: c for c in by_kind(docs, "CronJob")}
    rebuild = cronjobs["imgsearch-index-rebuild"]
    spec = rebuild["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and not spec.get("suspend")
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert spec["startingDeadlineSeconds"] > 0 and spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0
    # The job publishes where the index service polls.
    c = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = env_of(c, docs)
    assert env["INDEX_URI"] == named(docs, "ConfigMap", "imgsearch-index")["data"]["IMGSEARCH_INDEX_INDEX_URI"]
    assert env["EMBEDDER_URI"] == named(docs, "ConfigMap", "imgsearch-embedder")["data"]["IMGSEARCH_EMBEDDER_MODEL_URI"]
    # Sharded: completions, --shard .../N and --merge-shards=N agree.
    embed = cronjobs["imgsearch-index-embed-shards"]["spec"]
    merge = cronjobs["imgsearch-index-merge-shards"]["spec"]
    assert embed["suspend"] is True and merge["suspend"] is True
    job = embed["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    n = job["completions"]
    args = job["template"]["spec"]["containers"][0]["args"]
    assert f"--shard=$(JOB_COMPLETION_INDEX)/{n}" in args
    assert f"--merge-shards={n}" in merge["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]


def test_image_uid_matches_manifests(tmp_root: Path) -> None:
    text = (REPO / "Dockerfile").read_text()
    uid = int(re.search(r"^ARG UID=(\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    for target in WORKLOAD_TARGETS:
        for doc in workloads(render(target, tmp_root)):
            for pod in _pod_specs(doc):
                if any(c["image"].startswith("registry.example.com/imgsearch/") for c in pod["containers"]):
                    assert pod["securityContext"]["runAsUser"] == uid, doc["metadata"]["name"]
                    assert pod["securityContext"].get("fsGroup", uid) == uid


# --------------------------------------------------------------------------------------------------
# Monitoring
# --------------------------------------------------------------------------------------------------

def exposed_metric_names() -> set[str]:
    """Every sample name services/metrics.py exposes (counter _total/_created, histogram _bucket...)."""
    metrics = pytest.importorskip("services.metrics")
    from prometheus_client.metrics import MetricWrapperBase

    names: set[str] = set()
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        for family in obj.describe():
            base = family.name
            suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"],
                        "summary": ["", "_sum", "_count", "_created"], "gauge": [""], "info": ["_info"]}
            names.update(base + s for s in suffixes.get(family.type, [""]))
    return names


def referenced_metrics(expr: str) -> set[str]:
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(r"\b(imgsearch_[a-z0-9_]+)", no_strings))


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((K8S / "monitoring" / "alerts.rules.yaml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads((K8S / "monitoring" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dash.get("annotations", {}).get("list", []) if "expr" in a]
    return exprs


def test_rules_and_dashboard_use_real_metric_names() -> None:
    exposed = exposed_metric_names()
    for source, exprs in (("alerts.rules.yaml", rule_exprs()), ("grafana-dashboard.json", dashboard_exprs())):
        used = set().union(*(referenced_metrics(e) for e in exprs))
        assert used, source
        unknown = sorted(used - exposed)
        assert not unknown, f"{source} uses metrics services/metrics.py does not expose: {unknown}"


def test_required_alerts_exist() -> None:
    rules = yaml.safe_load((K8S / "monitoring" / "alerts.rules.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    text = " ".join(r["expr"] for r in alerts.values())
    for needle in ("imgsearch_http_requests_total", "histogram_quantile(0.99", "imgsearch_index_age_seconds",
                   "kube_pod_status_ready"):
        assert needle in text, needle
    for rule in alerts.values():
        assert rule["labels"]["severity"] in ("page", "warning") and rule["annotations"]["summary"]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_checks_rules() -> None:
    out = subprocess.run([PROMTOOL, "check", "rules", str(K8S / "monitoring" / "alerts.rules.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    def concrete(expr: str) -> str:
        return expr.replace("$__rate_interval", "5m").replace("$namespace", "imgsearch").replace("$track", ".*")

    rules = [{"record": f"dashboard:query_{i}", "expr": concrete(e)} for i, e in enumerate(dashboard_exprs())]
    groups = [{"name": "dashboard", "rules": rules}]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    out = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_checks_example_config() -> None:
    out = subprocess.run([PROMTOOL, "check", "config", str(K8S / "monitoring" / "prometheus.example.yaml")],
                         capture_output=True, text=True, timeout=60)
    if "kubernetes_sd_configs not found" in out.stdout + out.stderr:
        pytest.skip("this promtool build has no Kubernetes service discovery (Debian strips it)")
    assert out.returncode == 0, out.stdout + out.stderr


def test_prometheusrule_is_generated_from_the_rules_file() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_prometheusrule", K8S / "monitoring" / "gen_prometheusrule.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (K8S / "monitoring" / "prometheusrule.yaml").read_text() == module.render(), (
        "k8s/monitoring/prometheusrule.yaml is stale: run python k8s/monitoring/gen_prometheusrule.py"
    )


def test_podmonitor_and_annotations_label_alike(tmp_root: Path) -> None:
    pm = named(render("monitoring", tmp_root), "PodMonitor", "imgsearch")
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in pm["spec"]["podMetricsEndpoints"][0]["relabelings"]}
    cfg = yaml.safe_load((K8S / "monitoring" / "prometheus.example.yaml").read_text())
    plain = {r["target_label"]: r["source_labels"] for r in cfg["scrape_configs"][0]["relabel_configs"]
             if "target_label" in r}
    for label in ("component", "track"):
        assert relabel[label] == plain[label]
    port_name = pm["spec"]["podMetricsEndpoints"][0]["port"]
    for d in by_kind(render("base", tmp_root), "Deployment"):
        assert port_name in [p["name"] for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]]
