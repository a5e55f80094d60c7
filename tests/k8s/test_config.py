"""Configuration: ConfigMap keys == what services/common/settings.py reads, pinned models, Secrets, overlays."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from services.common import settings
from services.common.settings_groups import SettingsGroup
from tests.k8s.helpers import (
    AWS_KEY,
    NOT_IN_CONFIGMAP,
    PLACEHOLDER_SECRET_VALUES,
    SERVICES,
    by_kind,
    env_of,
    named,
    selector_matches,
    settings_configmaps,
)
from tests.k8s.render import REPO, WORKLOAD_TARGETS, render


def _env_names(prefix: str, name: str, field: FieldInfo) -> list[str]:
    """The variables pydantic-settings reads one field from: its alias(es) as they are, else prefix + name."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"{prefix}{name}"]


def settings_env_names() -> dict[str, dict[str, str]]:
    """service -> {ENV_NAME: flat name} as the settings read them: prefix + field (or its alias); a group's
    fields (settings_groups.py) by prefix + their flat name, the field's own validation alias or name."""
    out: dict[str, dict[str, str]] = {}
    for service, cls in settings.SETTINGS_CLASSES.items():
        prefix = cls.model_config.get("env_prefix", "")
        names: dict[str, str] = {}
        for field_name, field in cls.model_fields.items():
            group = field.annotation
            if isinstance(group, type) and issubclass(group, SettingsGroup):
                for sub_name, sub in group.model_fields.items():
                    flat = sub.validation_alias if isinstance(sub.validation_alias, str) else sub_name
                    names[f"{prefix}{flat}".upper()] = flat
                continue
            for env in _env_names(prefix, field_name, field):
                names[env.upper()] = field_name
        out[service] = names
    return out


def test_settings_exclusions_are_real_fields() -> None:
    names = settings_env_names()
    fields = {f for envs in names.values() for f in envs.values()}
    stale = set(NOT_IN_CONFIGMAP) - fields
    assert not stale, f"NOT_IN_CONFIGMAP lists fields that no longer exist: {stale}"


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_configmap_keys_match_settings(target: str, tmp_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_names = settings_env_names()
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
        assert parsed.server.host == "0.0.0.0", f"{cm_name}: must listen on all interfaces in a pod"


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
                for url in env[f"{prefix}{backend}_URL"].split(","):  # the index: one URL per partition
                    m = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", url)
                    assert m, url
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
    for service, model in (("detector", ""), ("detector", "POSE_"), ("detector", "PEOPLE_"), ("embedder", "")):
        data = cms[f"imgsearch-{service}"][1]
        prefix = f"IMGSEARCH_{service.upper()}_{model}"
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
    assert named(dev, "ConfigMap", "imgsearch-store")["data"]["AWS_ENDPOINT_URL"].startswith(
        "http://imgsearch-model-store"
    )
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
            if key.endswith("_URI") and value:  # empty: a store that is off (the query log's default)
                assert value.startswith("s3://"), f"prod {cm_name}: {key}={value}"
    istio = render("istio", tmp_root)
    assert not by_kind(istio, "Ingress"), "Istio's gateway replaces the Ingress (it would bypass routing)"
    vs = named(istio, "VirtualService", "imgsearch-gateway")
    dr = named(istio, "DestinationRule", "imgsearch-gateway")
    subsets = {s["name"]: s["labels"] for s in dr["spec"]["subsets"]}
    gateway_pods = [
        d["spec"]["template"]["metadata"]["labels"]
        for d in by_kind(istio, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"
    ]
    for labels in subsets.values():
        assert sum(selector_matches(labels, p) for p in gateway_pods) == 1, "each subset = one gateway Deployment"
    routes = [r for http in vs["spec"]["http"] for r in http["route"]]
    assert {r["destination"]["subset"] for r in routes} <= set(subsets)
    default = vs["spec"]["http"][-1]
    assert sum(r.get("weight", 100) for r in default["route"]) == 100
    assert default["mirror"]["subset"] in subsets
    svc = named(istio, "Service", "imgsearch-gateway")
    assert all(selector_matches(svc["spec"]["selector"], p) for p in gateway_pods), "subsets need one Service"
