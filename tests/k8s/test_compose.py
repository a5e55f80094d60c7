"""compose.yaml and the image smoke test's pod flags (scripts/pod_flags.py) stay at parity with k8s/base: the
same settings files, memory limits, models and restrictions as the pods. (The containers themselves run in
scripts/image-smoke.sh, which CI runs after the tests.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.helpers.paths import REPO
from tests.k8s.helpers import SERVICES

COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]
MODEL_KEYS = (
    "IMGSEARCH_DETECTOR_MODEL_URI",
    "IMGSEARCH_DETECTOR_POSE_MODEL_URI",
    "IMGSEARCH_DETECTOR_PEOPLE_MODEL_URI",
    "IMGSEARCH_EMBEDDER_MODEL_URI",
)


def _pod_flags() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pod_flags", REPO / "scripts" / "pod_flags.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


POD_FLAGS = _pod_flags()


@pytest.mark.parametrize("service", SERVICES)
def test_compose_runs_each_service_as_its_pod(service: str) -> None:
    compose = COMPOSE[service]
    pod, container = POD_FLAGS.workload(service)
    assert compose["command"] == container["args"]
    assert compose["mem_limit"] == POD_FLAGS.memory(container["resources"]["limits"]["memory"])
    assert compose["user"] == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    assert compose["read_only"] is container["securityContext"]["readOnlyRootFilesystem"]
    assert compose["cap_drop"] == container["securityContext"]["capabilities"]["drop"]
    maps = [s["configMapRef"]["name"] for s in container.get("envFrom", []) if "configMapRef" in s]
    files = [REPO / f for f in compose["env_file"]]
    assert files == [POD_FLAGS.BASE / f"{service}/{service}.env", *[POD_FLAGS.SHARED[m] for m in maps[1:]]]


def test_compose_serves_the_models_the_pods_pull() -> None:
    """Same model names as k8s/base (whose pins the env files carry), from the compose model store."""
    overridden = {k: v for s in COMPOSE.values() for k, v in (s.get("environment") or {}).items()}
    for key in MODEL_KEYS:
        service = key.split("_")[1].lower()
        pinned = POD_FLAGS.config_map(f"imgsearch-{service}")[key]
        assert overridden[key] == "http://model-store:9000/" + pinned.rsplit("/", 1)[1], key
        assert (REPO / "models" / pinned.rsplit("/", 1)[1] / "card.json").is_file()


@pytest.mark.parametrize("workload", [*SERVICES, "rebuild"])
def test_pod_flags_carry_the_manifest(workload: str) -> None:
    pod, container = POD_FLAGS.workload(workload)
    flags = POD_FLAGS.flags(workload, "run", {"IMGSEARCH_EMBEDDER_MODEL_URI": "http://store/m"})
    split = flags.index("--")
    podman, args = flags[:split], flags[split + 1 :]
    assert podman[:2] == ["--user", f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"]
    assert {"--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL", "no-new-privileges"} <= set(podman)
    mounts = [podman[i + 1] for i, f in enumerate(podman) if f == "-v"]
    assert [m.split(":", 1)[1] for m in mounts] == [v["mountPath"] for v in container["volumeMounts"]]
    assert "$(" not in " ".join(args)
    if workload == "rebuild":
        assert "--embedder=http://store/m" in args  # valueFrom follows the overlay's value
    if workload == "embedder":
        assert "-e" in podman and "IMGSEARCH_EMBEDDER_MODEL_URI=http://store/m" in podman


def test_memory_quantities_convert_or_refuse() -> None:
    assert POD_FLAGS.memory("1536Mi") == "1536m" and POD_FLAGS.memory("2Gi") == "2g"
    with pytest.raises(SystemExit):
        POD_FLAGS.memory("1.5G")


def test_the_smoke_script_is_what_ci_runs_after_the_tests() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.index("python -m pytest") < ci.index("scripts/image-smoke.sh")
    assert Path(REPO / "scripts" / "image-smoke.sh").stat().st_mode & 0o111
