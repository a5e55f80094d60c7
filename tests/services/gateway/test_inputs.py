"""Odd-but-valid images are accepted and bad ones refused with 4xx JSON, by every image endpoint,
and every service stays ready afterwards."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from services.common.wire import RGB_CONTENT_TYPE
from tests.helpers import Stack, shared_stack
from tests.helpers.http import encode, metric_value, search
from tests.helpers.paths import DATA

pytestmark = pytest.mark.stack

BAD = DATA / "bad"
CORPUS: dict[str, dict[str, str]] = json.loads((BAD / "corpus.json").read_text())
VALID = sorted(name for name, spec in CORPUS.items() if spec["expect"] == "200")
INVALID = sorted(name for name, spec in CORPUS.items() if spec["expect"] != "200")
ENDPOINTS = {"gateway": "/v1/search", "detector": "/v1/detect", "embedder": "/v1/embed"}


@pytest.fixture(scope="module")
def stack() -> Stack:
    return shared_stack()


@pytest.mark.parametrize("name", VALID)
def test_odd_but_valid_image_is_searched(stack: Stack, name: str) -> None:
    resp = search(stack.gateway_url, (BAD / name).read_bytes(), k=3)
    assert resp.status_code == 200, resp.text
    assert all(len(item["results"]) == 3 for item in resp.json()["items"])


@pytest.mark.parametrize("name", INVALID)
def test_bad_image_is_refused_with_4xx_json_everywhere(stack: Stack, name: str) -> None:
    data = (BAD / name).read_bytes()
    for service, path in ENDPOINTS.items():
        resp = httpx.post(stack.url(service) + path, files={"image": (name, data)}, trust_env=False, timeout=30)
        assert 400 <= resp.status_code < 500, (service, resp.status_code, resp.text)
        body = resp.json()
        assert set(body) == {"error"} and "Traceback" not in body["error"]


def test_services_stay_ready_after_bad_input_and_count_rejections(stack: Stack) -> None:
    for name in INVALID:
        search(stack.gateway_url, (BAD / name).read_bytes())
    for service in ("detector", "embedder", "index", "gateway"):
        assert httpx.get(stack.url(service) + "/readyz", trust_env=False).status_code == 200
    metrics = httpx.get(stack.gateway_url + "/metrics", trust_env=False).text
    assert metric_value(metrics, "imgsearch_rejections_total", reason="too_many_pixels") >= 1
    assert metric_value(metrics, "imgsearch_rejections_total", reason="not_an_image") >= 1


def test_oversized_upload_is_413_before_it_is_read_whole(stack: Stack) -> None:
    big = b"\xff\xd8\xff" + b"\0" * (21 * 1024 * 1024)
    resp = search(stack.gateway_url, big)
    assert resp.status_code == 413
    assert "error" in resp.json()

    def chunks() -> object:
        yield b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        for _ in range(30):
            yield b"\0" * (1024 * 1024)

    streamed = httpx.post(  # no content-length: refused while streaming
        stack.gateway_url + "/v1/search",
        content=chunks(),  # type: ignore[arg-type]
        headers={"content-type": "multipart/form-data; boundary=xyz"},
        trust_env=False,
        timeout=30,
    )
    assert streamed.status_code == 413


def test_missing_field_and_wrong_content_type_are_4xx(stack: Stack) -> None:
    gw = stack.gateway_url
    no_image = httpx.post(gw + "/v1/search", files={"photo": ("a.jpg", b"x")}, trust_env=False)
    assert no_image.status_code == 400 and "image" in no_image.json()["error"]
    as_json = httpx.post(gw + "/v1/search", json={"image": "x"}, trust_env=False)
    assert as_json.status_code == 415 and "error" in as_json.json()
    broken = httpx.post(
        gw + "/v1/search", content=b"--nope", headers={"content-type": "multipart/form-data"}, trust_env=False
    )
    assert broken.status_code == 400 and "error" in broken.json()


def test_internal_pixel_path_checks_its_headers(stack: Stack) -> None:
    url = stack.url("embedder") + "/v1/embed"
    ok = httpx.post(
        url,
        content=bytes(2 * 3 * 3),
        headers={"content-type": "application/x-imgsearch-rgb", "x-image-height": "2", "x-image-width": "3"},
    )
    assert ok.status_code == 200 and len(ok.json()["vectors"]) == 1
    bad = httpx.post(
        url,
        content=bytes(10),
        headers={"content-type": "application/x-imgsearch-rgb", "x-image-height": "2", "x-image-width": "3"},
    )
    assert bad.status_code == 400 and "error" in bad.json()


def _refused_content_types(base: str) -> float:
    text = httpx.get(base + "/metrics", trust_env=False).text
    return metric_value(text, "imgsearch_rejections_total", reason="bad_content_type")


def test_gateway_refuses_raw_pixels_the_backends_still_accept(stack: Stack) -> None:
    """The internal raw format reached the public search (8x the upload limit, and the cache keyed only its
    bytes: the same bytes as 16x64 then 64x16 got the first shape's answer). Now it is refused with 415."""
    pixels = np.random.default_rng(13).integers(0, 256, 16 * 64 * 3, dtype=np.uint8).tobytes()
    shapes = [("16", "64"), ("64", "16")]
    before = _refused_content_types(stack.gateway_url)
    for height, width in shapes:
        headers = {"content-type": RGB_CONTENT_TYPE, "x-image-height": height, "x-image-width": width}
        resp = httpx.post(stack.gateway_url + "/v1/search", content=pixels, headers=headers, trust_env=False)
        assert resp.status_code == 415, resp.text
        assert "multipart/form-data" in resp.json()["error"] and set(resp.json()) == {"error"}
        embedded = httpx.post(stack.url("embedder") + "/v1/embed", content=pixels, headers=headers, trust_env=False)
        assert embedded.status_code == 200 and len(embedded.json()["vectors"]) == 1
    assert _refused_content_types(stack.gateway_url) == before + len(shapes)
    spec = httpx.get(stack.gateway_url + "/openapi.json", trust_env=False).json()
    assert list(spec["paths"]["/v1/search"]["post"]["requestBody"]["content"]) == ["multipart/form-data"]
    assert search(stack.gateway_url, encode(np.zeros((16, 64, 3), np.uint8)), k=2).status_code == 200
