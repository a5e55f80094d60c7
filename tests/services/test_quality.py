"""Fashion-MNIST test-split images sent through the HTTP API retrieve their own category.

Catalog-style images (item on white, PNG): P@10 >= 0.85. Shop-style photos (item at varied size and place on
a light noisy background, JPEG): P@10 >= 0.80. The catalog is the demo index (DEMO_ITEMS train images).
P@10 is measured on the first (highest-scoring) item of each answer, as a shopper would see it.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from imgcore.fmnist import CLASS_NAMES, load_fmnist, render_catalog, render_shop_photo
from tests.helpers import Stack, shared_stack
from tests.helpers.http import encode

pytestmark = pytest.mark.stack

QUERIES = 300


@pytest.fixture(scope="module")
def stack() -> Stack:
    return shared_stack()


@pytest.fixture(scope="module")
def test_split() -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_fmnist("test")
    pick = np.random.default_rng(7).choice(len(images), QUERIES, replace=False)
    return images[pick], labels[pick]


def _precision_at_10(gateway: str, uploads: list[bytes], labels: np.ndarray) -> tuple[float, float]:
    async def run() -> list[dict[str, object]]:
        limit = asyncio.Semaphore(4)
        async with httpx.AsyncClient(trust_env=False, timeout=60) as http:

            async def one(data: bytes) -> dict[str, object]:
                async with limit:
                    resp = await http.post(gateway + "/v1/search?k=10", files={"image": ("q", data)})
                    assert resp.status_code == 200, resp.text
                    body: dict[str, object] = resp.json()
                    return body

            return await asyncio.gather(*(one(d) for d in uploads))

    answers = asyncio.run(run())
    precisions, fallbacks = [], 0
    for body, label in zip(answers, labels, strict=True):
        items = body["items"]
        assert isinstance(items, list) and items
        first = items[0]
        fallbacks += first.get("fallback") == "whole_image"
        cats = [hit["category"] for hit in first["results"]]
        assert len(cats) == 10
        precisions.append(sum(c == CLASS_NAMES[int(label)] for c in cats) / 10)
    return float(np.mean(precisions)), fallbacks / len(answers)


def test_catalog_style_queries_retrieve_their_category(stack: Stack, test_split: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = test_split
    uploads = [encode(render_catalog(img)) for img in images]
    p10, fallback_rate = _precision_at_10(stack.gateway_url, uploads, labels)
    print(f"catalog-style P@10 = {p10:.3f} (whole-image fallback on {fallback_rate:.0%})")
    assert p10 >= 0.85, f"catalog-style P@10 {p10:.3f} < 0.85"


def test_shop_photos_retrieve_their_category(stack: Stack, test_split: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = test_split
    rng = np.random.default_rng(11)
    uploads = [encode(render_shop_photo(img, rng), "JPEG", quality=85) for img in images]
    p10, fallback_rate = _precision_at_10(stack.gateway_url, uploads, labels)
    print(f"shop-style P@10 = {p10:.3f} (whole-image fallback on {fallback_rate:.0%})")
    assert p10 >= 0.80, f"shop-style P@10 {p10:.3f} < 0.80"
