"""The partitioned-index component (issue 16): N from its one setting, one workload per partition, the gateway
pointed at every partition; the generic checks of tests/k8s run on it through the prod+components target."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from services.common.settings import GatewaySettings, IndexSettings
from tests.k8s.helpers import by_kind, env_of, named
from tests.k8s.render import K8S, render

COMPONENT = K8S / "components" / "partitioned-index"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_partitions", COMPONENT / "gen_partitions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_follow_the_partitions_setting() -> None:
    gen = _generator()
    assert (COMPONENT / "partitions.yaml").read_text() == gen.render(), "stale: run gen_partitions.py"
    assert (COMPONENT / "gateway-index.env").read_text() == gen.render_gateway_env(), "stale: run gen_partitions.py"


def test_every_partition_is_its_own_workload_and_the_gateway_asks_them_all(tmp_root: Path) -> None:
    n = _generator().partitions()
    docs = render("prod+components", tmp_root)
    index_deployments = [
        d for d in by_kind(docs, "Deployment") if d["metadata"]["labels"].get("app.kubernetes.io/component") == "index"
    ]
    assert sorted(d["metadata"]["name"] for d in index_deployments) == sorted(f"imgsearch-index-p{i}" for i in range(n))
    for i in range(n):
        name = f"imgsearch-index-p{i}"
        container = named(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        env = env_of(container, docs)
        settings = IndexSettings(
            **{k[len("IMGSEARCH_INDEX_") :].lower(): v for k, v in env.items() if k.startswith("IMGSEARCH_INDEX_")}
        )
        assert settings.partition == i, name
        for kind in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
            named(docs, kind, name)  # its own replicas, budget and address
    gateway = named(docs, "Deployment", "imgsearch-gateway")["spec"]["template"]["spec"]["containers"][0]
    urls = env_of(gateway, docs)["IMGSEARCH_GATEWAY_INDEX_URL"]
    assert GatewaySettings(index_url=urls).backends.index_url.split(",") == [
        f"http://imgsearch-index-p{i}:8103" for i in range(n)
    ]
