"""Search through the gateway, with all four services as real processes on the demo index."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import Stack, demo_data_dir, shared_stack
from tests.helpers.http import encode, metric_value, search
from tests.helpers.paths import DATA
from tests.helpers.stack import DEMO_ITEMS

pytestmark = pytest.mark.stack

PHOTOS = DATA / "photos"


@pytest.fixture(scope="module")
def stack() -> Stack:
    return shared_stack()


@pytest.fixture(scope="module")
def gw(stack: Stack) -> str:
    return stack.gateway_url


@pytest.mark.parametrize("photo", ["person.jpg", "dog.jpg", "horses.jpg"])
def test_search_real_photo_returns_items_with_k_results_each(gw: str, photo: str) -> None:
    resp = search(gw, (PHOTOS / photo).read_bytes(), k=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["items"], body
    for item in body["items"]:
        assert set(item) >= {"label", "category", "score", "box", "results"}
        assert len(item["results"]) == 10
        for hit in item["results"]:
            assert set(hit) >= {"item_id", "score", "category", "title", "image_url"}
        scores = [h["score"] for h in item["results"]]
        assert scores == sorted(scores, reverse=True)
    item_scores = [i["score"] for i in body["items"] if i["score"] is not None]
    assert item_scores == sorted(item_scores, reverse=True)
    assert set(body["timings_ms"]) == {"decode", "detect", "embed", "search", "total"}
    assert body["index_version"]
    assert body["models"]["embedder"]["sha256"]
    assert resp.headers["x-request-id"]


def test_person_photo_is_detected_not_searched_whole(gw: str) -> None:
    body = search(gw, (PHOTOS / "person.jpg").read_bytes()).json()
    # The person is detected and searched as its garments (#15), not as the whole photo.
    assert any(item["label"] == "top" for item in body["items"]), body["items"]
    assert any(item["label"] == "person" for item in body["ignored"]), body["ignored"]
    assert "fallback" not in body
    assert body["models"]["detector"]["name"]


def test_plain_image_falls_back_to_whole_image(gw: str) -> None:
    blank = np.full((200, 300, 3), 240, np.uint8)
    body = search(gw, encode(blank), k=5).json()
    assert len(body["items"]) == 1
    assert body["items"][0]["fallback"] == "whole_image"
    assert body["fallback"] == "whole_image"
    assert len(body["items"][0]["results"]) == 5


def test_a_product_shot_is_searched_with_one_index_query(stack: Stack, gw: str) -> None:
    def queries() -> float:
        text = httpx.get(stack.url("index") + "/metrics", trust_env=False).text
        return metric_value(text, "imgsearch_http_requests_total", route="/v1/query", method="POST", status="200")

    images = demo_data_dir() / "catalog" / "images"
    item_id = f"fmnist-train-{DEMO_ITEMS - 3:05d}"  # not searched by the other tests: no cached answer
    before = queries()
    body = search(gw, (images / f"{item_id}.png").read_bytes(), k=5).json()
    # The whole image is embedded and searched while the detector runs (the stack is idle; the order itself:
    # tests/services/gateway/test_speculation.py): that answer is the one given, and the index is asked once.
    assert body["fallback"] == "whole_image" and body["items"][0]["results"][0]["item_id"] == item_id
    assert queries() == before + 1


def test_search_by_box_searches_only_that_region(gw: str) -> None:
    data = (PHOTOS / "dog.jpg").read_bytes()
    with Image.open(PHOTOS / "dog.jpg") as img:
        width, height = img.size
    resp = search(gw, data, k=7, box=f"10,20,{width // 2},{height + 500}")
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert len(items) == 1
    assert items[0]["box"] == [10.0, 20.0, float(width // 2), float(height)]  # clipped to the image
    assert items[0]["source"] == "user_box"
    assert len(items[0]["results"]) == 7


def test_bad_box_is_rejected_with_400(gw: str) -> None:
    data = (PHOTOS / "dog.jpg").read_bytes()
    for box in ("1,2,3", "a,b,c,d", "50,50,10,10", "100000,100000,100001,100001"):
        resp = search(gw, data, box=box)
        assert resp.status_code == 400, (box, resp.text)
        assert "error" in resp.json()


def test_category_filter_returns_only_that_category(gw: str) -> None:
    resp = search(gw, (PHOTOS / "person.jpg").read_bytes(), k=10, category="Bag")
    assert resp.status_code == 200, resp.text
    for item in resp.json()["items"]:
        assert [h["category"] for h in item["results"]] == ["Bag"] * 10


def test_unknown_category_is_404_json(gw: str) -> None:
    resp = search(gw, (PHOTOS / "person.jpg").read_bytes(), category="Spaceship")
    assert resp.status_code == 404
    assert "Spaceship" in resp.json()["error"]


def test_search_by_item_returns_similar_items_without_itself(gw: str) -> None:
    first = search(gw, (PHOTOS / "dog.jpg").read_bytes()).json()["items"][0]["results"][0]
    resp = httpx.get(f"{gw}/v1/items/{first['item_id']}/similar", params={"k": 5}, trust_env=False)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["item"]["item_id"] == first["item_id"]
    assert len(body["results"]) == 5
    assert first["item_id"] not in [h["item_id"] for h in body["results"]]
    filtered = httpx.get(
        f"{gw}/v1/items/{first['item_id']}/similar", params={"k": 3, "category": "Sandal"}, trust_env=False
    ).json()
    assert [h["category"] for h in filtered["results"]] == ["Sandal"] * 3


def test_a_catalog_image_searched_as_it_is_finds_its_own_vector_first(gw: str) -> None:
    # The rebuild and the search path preprocess a whole image through one function
    # (Embedder.whole_image_pixels): same pixels, same vector, so the item itself comes first at cosine ~1.
    # Before, the index embedded catalog images whole and the search their foreground box: X first in ~50 %.
    images = demo_data_dir() / "catalog" / "images"
    for n in range(0, DEMO_ITEMS, max(1, DEMO_ITEMS // 20)):
        item_id = f"fmnist-train-{n:05d}"
        body = search(gw, (images / f"{item_id}.png").read_bytes(), k=10).json()
        results = body["items"][0]["results"]
        assert body.get("fallback") == "whole_image", body  # no detection: the searched path is the whole image
        own = [hit["score"] for hit in results if hit["item_id"] == item_id]
        assert own and own[0] >= 0.9999, (item_id, results[:3])
        assert results[0]["score"] - own[0] < 1e-5, (item_id, results[:3])  # first, or tied with a duplicate


def test_unknown_item_is_404_json(gw: str) -> None:
    for path in ("/v1/items/nope/similar", "/v1/items/nope/image"):
        resp = httpx.get(gw + path, trust_env=False)
        assert resp.status_code == 404
        assert "error" in resp.json()


def test_item_image_is_its_thumbnail_from_the_index(gw: str) -> None:
    hit = search(gw, (PHOTOS / "dog.jpg").read_bytes()).json()["items"][0]["results"][0]
    resp = httpx.get(gw + hit["image_url"], trust_env=False)
    assert resp.status_code == 200
    # The demo catalog's 112 px plain PNGs are their own thumbnails (ann_index.build.thumb_reuse), not enlarged.
    assert resp.headers["content-type"] == "image/png" and resp.headers["x-content-type-options"] == "nosniff"
    assert Image.open(io.BytesIO(resp.content)).size == (112, 112)


def test_repeated_search_is_a_cache_hit(gw: str) -> None:
    data = (PHOTOS / "horses.jpg").read_bytes()
    before = metric_value(
        httpx.get(gw + "/metrics").text, "imgsearch_cache_requests_total", cache="search", result="hit"
    )
    first = search(gw, data, k=3).json()
    second = search(gw, data, k=3).json()
    other_k = search(gw, data, k=4).json()
    after = metric_value(
        httpx.get(gw + "/metrics").text, "imgsearch_cache_requests_total", cache="search", result="hit"
    )
    assert second["cached"] is True and other_k["cached"] is False
    per_request = ("cached", "timings_ms")  # the rest of a cached answer is the first one, key for key
    assert {k: v for k, v in second.items() if k not in per_request} == {
        k: v for k, v in first.items() if k not in per_request
    }
    assert set(second["timings_ms"]) == set(first["timings_ms"])
    assert after == before + 1


@pytest.mark.parametrize("k", ["0", "101", "ten"])
def test_bad_k_is_a_4xx_json_error(gw: str, k: str) -> None:
    resp = search(gw, (PHOTOS / "dog.jpg").read_bytes(), k=k)
    assert 400 <= resp.status_code < 500
    assert "error" in resp.json()


def test_request_id_is_propagated(gw: str, stack: Stack) -> None:
    resp = httpx.post(
        gw + "/v1/search?k=2",
        files={"image": ("p", (PHOTOS / "dog.jpg").read_bytes())},
        headers={"x-request-id": "trace-me-42"},
        trust_env=False,
        timeout=30,
    )
    assert resp.headers["x-request-id"] == "trace-me-42"
    logs = (stack.root / "logs" / "embedder.log").read_text()
    assert "rid=trace-me-42" in logs
