"""Monitoring (k8s/monitoring/): rules, dashboard and config use real metric names and valid PromQL.

promtool is required (scripts/setup-test-env.sh unpacks it from the Debian package `prometheus`); without it
these tests fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from services.common import metrics
from tests.k8s.helpers import by_kind, named
from tests.k8s.render import K8S, render


def exposed_metric_names() -> set[str]:
    """Every sample name services/common/metrics.py exposes (counter _total/_created, histogram _bucket...)."""
    names: set[str] = set()
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        for family in obj.describe():
            base = family.name
            suffixes = {
                "counter": ["_total", "_created"],
                "histogram": ["_bucket", "_sum", "_count", "_created"],
                "summary": ["", "_sum", "_count", "_created"],
                "gauge": [""],
                "info": ["_info"],
            }
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
        assert not unknown, f"{source} uses metrics services/common/metrics.py does not expose: {unknown}"


def test_required_alerts_exist() -> None:
    rules = yaml.safe_load((K8S / "monitoring" / "alerts.rules.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    text = " ".join(r["expr"] for r in alerts.values())
    for needle in (
        "imgsearch_http_requests_total",
        "histogram_quantile(0.99",
        "imgsearch_index_age_seconds",
        "kube_pod_status_ready",
    ):
        assert needle in text, needle
    for rule in alerts.values():
        assert rule["labels"]["severity"] in ("page", "warning") and rule["annotations"]["summary"]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `promtool check ...`. promtool is a test dependency (unpacked from the Debian package `prometheus`
    by scripts/setup-test-env.sh): when it is missing the test fails, it is not skipped."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: run scripts/setup-test-env.sh (it unpacks it from Debian's `prometheus`); "
            "the rules, dashboard and Prometheus config checks need it",
            pytrace=False,
        )
    return subprocess.run([path, "check", *args], capture_output=True, text=True, timeout=60)


def test_promtool_checks_rules() -> None:
    out = _promtool("rules", str(K8S / "monitoring" / "alerts.rules.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    def concrete(expr: str) -> str:
        return expr.replace("$__rate_interval", "5m").replace("$namespace", "imgsearch").replace("$track", ".*")

    rules = [{"record": f"dashboard:query_{i}", "expr": concrete(e)} for i, e in enumerate(dashboard_exprs())]
    groups = [{"name": "dashboard", "rules": rules}]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    out = _promtool("rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr


# Roles of kubernetes_sd_configs, and the meta label prefix each one provides.
_BACKING = ("__meta_kubernetes_pod_", "__meta_kubernetes_service_")  # endpoints also carry their pod's
SD_ROLES: dict[str, tuple[str, ...]] = {
    "pod": ("__meta_kubernetes_pod_",),
    "service": ("__meta_kubernetes_service_",),
    "endpoints": ("__meta_kubernetes_endpoint_", "__meta_kubernetes_endpoints_", *_BACKING),
    "endpointslice": ("__meta_kubernetes_endpointslice_", *_BACKING),
    "node": ("__meta_kubernetes_node_",),
    "ingress": ("__meta_kubernetes_ingress_",),
}


def test_promtool_checks_example_config(tmp_path: Path) -> None:
    """`promtool check config` (which checks the rule files too). Debian's promtool is built without
    Kubernetes service discovery and rejects `kubernetes_sd_configs`; then the rest of the file (relabel
    rules, regexes, rule files) is checked with static targets in their place, and the discovery blocks
    are checked here."""
    source = K8S / "monitoring" / "prometheus.example.yaml"
    out = _promtool("config", str(source))
    if "kubernetes_sd_configs not found" not in out.stdout + out.stderr:
        assert out.returncode == 0, out.stdout + out.stderr
        return
    cfg = yaml.safe_load(source.read_text())
    for job in cfg["scrape_configs"]:
        for sd in job.pop("kubernetes_sd_configs", []):
            assert set(sd) <= {"role", "namespaces", "selectors", "api_server", "kubeconfig_file"}, sd
            assert sd["role"] in SD_ROLES, sd
            names = (sd.get("namespaces") or {}).get("names", [])
            assert all(isinstance(n, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) for n in names)
            used = {
                lab
                for r in job.get("relabel_configs", [])
                for lab in r.get("source_labels", [])
                if lab.startswith("__meta_kubernetes_") and lab != "__meta_kubernetes_namespace"
            }
            wrong = sorted(lab for lab in used if not lab.startswith(SD_ROLES[sd["role"]]))
            assert not wrong, f"{job['job_name']}: role {sd['role']} provides no {wrong}"
            job.setdefault("static_configs", []).append({"targets": ["pod.invalid:8080"]})
    for rule_file in cfg.get("rule_files", []):
        shutil.copy(source.parent / rule_file, tmp_path / rule_file)
    (tmp_path / source.name).write_text(yaml.safe_dump(cfg))
    out = _promtool("config", str(tmp_path / source.name))
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
    plain = {
        r["target_label"]: r["source_labels"]
        for r in cfg["scrape_configs"][0]["relabel_configs"]
        if "target_label" in r
    }
    for label in ("component", "track"):
        assert relabel[label] == plain[label]
    port_name = pm["spec"]["podMetricsEndpoints"][0]["port"]
    for d in by_kind(render("base", tmp_root), "Deployment"):
        assert port_name in [p["name"] for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]]
