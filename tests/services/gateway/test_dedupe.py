"""`dedupe=true` (issue 28): the gateway collapses near-identical pictures by their fingerprints, which the
index makes from its thumbnails (ann_index/serving/prints.py), not by embedding cosine."""

from __future__ import annotations

import cv2
import numpy as np

from ann_index.serving.prints import PrintCache
from imgcore.fingerprint import encoded_fingerprints, print_score, prints_from_b64, prints_to_b64
from imgcore.fmnist import load_fmnist, render_catalog
from services.gateway.dedupe import asked_k, collapse, finish, query_options


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _pictures() -> list[np.ndarray]:
    images, labels = load_fmnist("test")
    shirts = np.flatnonzero(labels == 6)[:3]  # look-alikes: three different shirts
    return [render_catalog(images[i]) for i in shirts]


def _hit(item_id: str, thumb: bytes | None) -> dict[str, object]:
    hit: dict[str, object] = {"item_id": item_id, "score": 0.9}
    if thumb is not None:
        found = encoded_fingerprints(thumb)
        assert found is not None
        hit["print"] = prints_to_b64(found)
    return hit


def test_a_re_encoded_copy_collapses_and_look_alikes_stay() -> None:
    a, b, c = _pictures()
    resized = cv2.resize(a, (150, 150), interpolation=cv2.INTER_AREA)
    hits = [_hit("a", _png(a)), _hit("b", _png(b)), _hit("a-jpeg", _jpeg(a, 70)), _hit("no-thumb", None),
            _hit("a-resized", _png(resized)), _hit("c", _png(c))]  # fmt: skip
    kept = collapse([dict(h) for h in hits], k=10)
    assert [h["item_id"] for h in kept] == ["a", "b", "no-thumb", "c"]
    assert all("print" not in h for h in kept)
    assert [h["item_id"] for h in collapse([dict(h) for h in hits], k=2)] == ["a", "b"]
    options = query_options(None, "product", True)
    rows = finish([[dict(h) for h in hits]], 3, options, drop=lambda h: h["item_id"] == "b")
    assert [h["item_id"] for h in rows[0]] == ["a", "no-thumb", "c"]


def test_fingerprints_survive_the_wire_and_garbage_is_none() -> None:
    a, b, _ = _pictures()
    pa, pb = encoded_fingerprints(_png(a)), encoded_fingerprints(_png(b))
    assert pa is not None and pb is not None
    back = prints_from_b64(prints_to_b64(pa))
    assert back is not None and back.shape == pa.shape and np.abs(back - pa).max() < 1e-3
    assert abs(print_score(back, pb) - print_score(pa, pb)) < 2e-3
    for garbage in (None, 7, "not base64!", prints_to_b64(pa[:2]), prints_to_b64(np.full_like(pa, np.inf))):
        assert prints_from_b64(garbage) is None


def test_options_ask_the_index_for_fingerprints_and_more_hits() -> None:
    assert query_options('brand = "Mori"', "none", True) == {"group": "none", "filter": 'brand = "Mori"',
                                                              "with_prints": True}  # fmt: skip
    assert query_options(None, "product", False) == {"group": "product"}
    assert asked_k(10, query_options(None, "product", True)) == 30 and asked_k(10, {"group": "product"}) == 10


def test_print_cache_keeps_the_most_recent_by_thumbnail_digest() -> None:
    a, b, c = (_png(p) for p in _pictures())
    cache = PrintCache(max_prints=2)
    first = cache.of(a)
    assert first is not None and cache.of(a) is first and len(cache) == 1
    assert cache.of(b) is not None and cache.of(c) is not None and len(cache) == 2
    assert cache.of(a) is not first  # evicted, made again
    assert cache.of(b"not an image") is None
