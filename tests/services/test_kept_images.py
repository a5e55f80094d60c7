"""The embedder keeps a decoded photo for a boxes-only second call (services/embedder/kept.py)."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from services.common.wire import vectors_from_b64
from services.embedder.kept import ImageNotKept, KeptImages
from tests.helpers import Stack, shared_stack
from tests.helpers.paths import DATA

PHOTO = (DATA / "photos" / "person.jpg").read_bytes()
BOXES = "[[10,10,200,300],[50,40,120,160]]"


def test_kept_images_are_bounded_in_bytes_oldest_out_first() -> None:
    kept = KeptImages(max_bytes=3 * 1000)
    images = {key: np.full((10, 100), i, np.uint8) for i, key in enumerate(("a", "b", "c", "d"))}
    for key, image in images.items():
        kept.put(key, image)
    assert kept.nbytes == 3000
    with pytest.raises(ImageNotKept) as err:
        kept.get("a")
    assert err.value.status == 404 and err.value.reason == "image_not_kept"
    assert kept.get("d") is images["d"]
    kept.put("huge", np.zeros((100, 100), np.uint8))  # over the bound on its own: not kept, nothing evicted
    assert kept.nbytes == 3000 and kept.get("b") is images["b"]


def test_kept_images_expire() -> None:
    kept = KeptImages(max_bytes=10_000, keep_s=0.05)
    kept.put("a", np.zeros((10, 10), np.uint8))
    time.sleep(0.1)
    with pytest.raises(ImageNotKept):
        kept.get("a")
    assert kept.nbytes == 0


@pytest.mark.stack
def test_boxes_of_a_kept_photo_embed_as_with_its_pixels() -> None:
    stack: Stack = shared_stack()
    url = stack.url("embedder") + "/v1/embed"
    image_id = "0123456789abcdef0123456789abcdef"
    with httpx.Client(trust_env=False, timeout=30) as http:
        sent = http.post(url, params={"boxes": BOXES, "format": "b64", "keep": image_id}, files={"image": ("p", PHOTO)})
        again = http.post(url, params={"boxes": BOXES, "format": "b64", "image_id": image_id})
        gone = http.post(url, params={"boxes": BOXES, "image_id": "f" * 32})
    assert sent.status_code == 200 and again.status_code == 200, again.text
    first, second = sent.json(), again.json()
    assert second["boxes"] == first["boxes"]
    np.testing.assert_array_equal(
        vectors_from_b64(second["vectors_b64"], second["dim"]), vectors_from_b64(first["vectors_b64"], first["dim"])
    )
    assert gone.status_code == 404 and "not kept" in gone.json()["error"]
