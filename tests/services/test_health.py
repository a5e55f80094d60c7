"""Every service answers /livez, /readyz, /metrics and /docs; the metrics the operators rely on exist."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.helpers import Stack, shared_stack
from tests.helpers.http import metric_value, search
from tests.helpers.paths import DATA

pytestmark = pytest.mark.stack

PHOTO = (DATA / "photos" / "horses.jpg").read_bytes()
SERVICES = ("detector", "embedder", "index", "gateway")


@pytest.fixture(scope="module")
def stack() -> Stack:
    return shared_stack()


@pytest.mark.parametrize("service", SERVICES)
def test_health_docs_and_metrics_endpoints(stack: Stack, service: str) -> None:
    base = stack.url(service)
    assert httpx.get(base + "/livez", trust_env=False).json() == {"status": "alive"}
    ready = httpx.get(base + "/readyz", trust_env=False)
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert httpx.get(base + "/docs", trust_env=False).status_code == 200
    spec = httpx.get(base + "/openapi.json", trust_env=False).json()
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert op.get("description") or op.get("summary"), path
    metrics = httpx.get(base + "/metrics", trust_env=False)
    assert metrics.status_code == 200
    assert "imgsearch_http_requests_total" in metrics.text


def test_readyz_reports_models_index_and_embedder_binding(stack: Stack) -> None:
    embedder = httpx.get(stack.url("embedder") + "/readyz", trust_env=False).json()
    index = httpx.get(stack.url("index") + "/readyz", trust_env=False).json()
    assert embedder["model"]["dim"] == index["index"]["dim"]
    assert embedder["model"]["sha256"] == index["index"]["embedder"]["sha256"]
    assert index["index"]["count"] > 0 and "Bag" in index["index"]["categories"]
    gateway = httpx.get(stack.gateway_url + "/readyz", trust_env=False).json()
    assert all(b["ready"] for b in gateway["backends"].values())


def test_unknown_route_is_404_json(stack: Stack) -> None:
    resp = httpx.get(stack.gateway_url + "/v1/nothing", trust_env=False)
    assert resp.status_code == 404 and "error" in resp.json()


def test_metrics_cover_stages_batches_models_and_index(stack: Stack) -> None:
    assert search(stack.gateway_url, PHOTO, k=5).status_code == 200
    gw = httpx.get(stack.gateway_url + "/metrics", trust_env=False).text
    for stage in ("decode", "detect", "embed", "search", "total"):
        assert metric_value(gw, "imgsearch_stage_seconds_count", stage=stage) >= 1, stage
    assert metric_value(gw, "imgsearch_http_requests_total", route="/v1/search", method="POST", status="200") >= 1
    assert metric_value(gw, "imgsearch_backend_call_seconds_count", backend="embedder") >= 1
    emb = httpx.get(stack.url("embedder") + "/metrics", trust_env=False).text
    emb_model = httpx.get(stack.url("embedder") + "/readyz", trust_env=False).json()["model"]["name"]
    det_model = httpx.get(stack.url("detector") + "/readyz", trust_env=False).json()["model"]["name"]
    assert metric_value(emb, "imgsearch_embed_batch_size_count") >= 1
    assert metric_value(emb, "imgsearch_model_load_seconds", model="embedder") > 0
    assert metric_value(emb, "imgsearch_stage_seconds_count", stage="queue") >= 1
    det = httpx.get(stack.url("detector") + "/metrics", trust_env=False).text
    assert metric_value(det, "imgsearch_model_load_seconds", model="detector") > 0
    # Both model services warmed their model before they said ready (settings `warm_up`, on by default).
    assert metric_value(emb, "imgsearch_model_warmup_seconds", model=emb_model) > 0
    assert metric_value(det, "imgsearch_model_warmup_seconds", model=det_model) > 0
    idx = httpx.get(stack.url("index") + "/metrics", trust_env=False).text
    assert metric_value(idx, "imgsearch_index_items") > 0
    assert metric_value(idx, "imgsearch_index_age_seconds") > 0
    assert "imgsearch_index_info{version=" in idx


def test_concurrent_embed_requests_are_batched(stack: Stack) -> None:
    url = stack.url("embedder") + "/v1/embed"
    boxes = "[[0,0,50,50],[10,10,90,90]]"

    async def burst() -> list[int]:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
            answers = await asyncio.gather(
                *(http.post(url, params={"boxes": boxes}, files={"image": ("p", PHOTO)}) for _ in range(12))
            )
        return [r.status_code for r in answers]

    before = httpx.get(stack.url("embedder") + "/metrics", trust_env=False).text
    assert asyncio.run(burst()) == [200] * 12
    after = httpx.get(stack.url("embedder") + "/metrics", trust_env=False).text
    rows = metric_value(after, "imgsearch_embed_batch_size_sum") - metric_value(
        before, "imgsearch_embed_batch_size_sum"
    )
    runs = metric_value(after, "imgsearch_embed_batch_size_count") - metric_value(
        before, "imgsearch_embed_batch_size_count"
    )
    assert rows == 24
    assert runs < 12  # at least some requests shared a batch
