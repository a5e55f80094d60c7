"""`imgsearch eval --url`: evaluation through a gateway, over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.evaluate import load_queries
from services.cli.evaluate import evaluate_via_gateway


def test_gateway_evaluation_posts_each_image_and_reads_the_first_item(tmp_path: Path) -> None:
    queries = load_queries(str(write_fmnist_catalog(tmp_path / "q", split="test", limit=6)))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 6:
            return httpx.Response(503, json={"error": "overloaded"})
        results = [{"item_id": "x", "category": queries[0].category}] * 10
        return httpx.Response(200, json={"items": [{"results": results}, {"results": []}]})

    report = evaluate_via_gateway(
        "http://gw", queries, concurrency=1, client_factory=lambda: httpx.Client(transport=httpx.MockTransport(handler))
    )
    assert len(seen) == 6 and report.failed == 1
    assert seen[0].url.path == "/v1/search" and seen[0].url.params["k"] == "10"
    assert b'name="image"' in seen[0].read()
    assert report.per_category[queries[0].category]["p_at_10"] == 1.0
    assert json.dumps(report.to_dict())
