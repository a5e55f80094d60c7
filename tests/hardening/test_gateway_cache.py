"""The gateway's result cache: bounded in bytes (answers at k=100 weigh tens of kB each, and prod kept 8192 of
them), evicting the least recently used first, and keyed on everything that changes an answer.

Unit tests on the cache and its key; then a real gateway process with a small byte bound in front of the
shared stack's backends, fed many distinct k=100 searches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.common.uploads import Upload
from services.gateway.cache import LRUCache
from services.gateway.search import CacheKey, SearchParams
from services.stack import ServiceProcess, free_port, start_service
from tests.helpers import Stack, shared_stack
from tests.helpers.http import encode, metric_value, search

ANSWER_BYTES = 51_000  # an answer at k=100, as measured by the finding
BOUND = 100_000  # --cache-max-bytes of the gateway started here: a few k=100 answers
RESULTS = ("hit", "miss")


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("imgsearch_cache_bytes", {"cache": name})


def test_cache_key_changes_with_shape_k_category_box_index_version_and_models() -> None:
    pixels = np.arange(16 * 64 * 3, dtype=np.uint8)
    wide, tall = Upload(pixels=pixels.reshape(16, 64, 3)), Upload(pixels=pixels.reshape(64, 16, 3))
    params = SearchParams(k=10)
    key = CacheKey.of(wide, params, "v1")
    assert key == CacheKey.of(Upload(pixels=pixels.reshape(16, 64, 3).copy()), SearchParams(k=10), "v1")
    others = [
        CacheKey.of(tall, params, "v1"),  # the same bytes, another shape
        CacheKey.of(wide, SearchParams(k=11), "v1"),
        CacheKey.of(wide, SearchParams(k=10, category="shoes"), "v1"),
        CacheKey.of(wide, SearchParams(k=10, box=(0.0, 0.0, 8.0, 8.0)), "v1"),
        CacheKey.of(wide, params, "v2"),
        CacheKey.of(wide, params, "v1", "detector-2/embedder-1"),  # another model: another answer
        CacheKey.of(Upload(data=pixels.tobytes()), params, "v1"),  # encoded bytes are not those pixels
    ]
    assert len({key, *others}) == len(others) + 1


def test_byte_bound_holds_under_many_large_answers_and_evicts_least_recently_used_first() -> None:
    cache: LRUCache[int, bytes] = LRUCache("unit-bytes", 8192, max_bytes=10 * ANSWER_BYTES)
    cache.put(0, os.urandom(ANSWER_BYTES), ANSWER_BYTES)
    for i in range(1, 200):
        assert cache.get(0) is not None, i  # kept fresh: never the one evicted
        cache.put(i, os.urandom(ANSWER_BYTES), ANSWER_BYTES)
        assert cache.bytes <= 10 * ANSWER_BYTES and _gauge("unit-bytes") == cache.bytes
    assert len(cache) == 10 and cache.bytes == 10 * ANSWER_BYTES
    assert cache.get(1) is None and cache.get(190) is None and cache.get(191) is not None  # 0 and the last 9
    cache.put(191, b"x" * 10, 10)  # replacing an entry does not count it twice
    assert cache.bytes == 9 * ANSWER_BYTES + 10
    cache.clear()
    assert cache.bytes == 0 and _gauge("unit-bytes") == 0


def test_an_answer_larger_than_the_bound_is_not_cached_and_evicts_nothing() -> None:
    cache: LRUCache[str, bytes] = LRUCache("unit-huge", 100, max_bytes=2 * ANSWER_BYTES)
    cache.put("small", b"s", ANSWER_BYTES)
    cache.put("huge", b"h", 2 * ANSWER_BYTES + 1)
    assert cache.get("huge") is None and cache.get("small") == b"s" and cache.bytes == ANSWER_BYTES
    off: LRUCache[str, bytes] = LRUCache("unit-zero", 100, max_bytes=0)
    off.put("a", b"a", 1)
    assert off.get("a") is None and len(off) == 0


# --------------------------------------------------------------------------- a real gateway process


@pytest.fixture(scope="module")
def small_cache_gateway() -> Iterator[ServiceProcess]:
    """A gateway with a BOUND-byte result cache (and room for 8192 entries) on the shared stack's backends."""
    stack: Stack = shared_stack()
    cache = ["--cache-size", "8192", "--cache-max-bytes", str(BOUND)]
    # a detector timeout under load would leave an answer uncached (by design) and the test without evictions
    args = [*stack.args["gateway"], *cache, "--detect-timeout-s", "60"]
    log = stack.root / "logs" / "gateway-small-cache.log"
    proc = start_service("gateway", free_port(), args=args, log_path=log)
    try:
        assert proc.wait_ready(120), proc.log_tail()
        yield proc
    finally:
        proc.stop()


def _cache_metrics(base: str) -> tuple[float, float, float]:
    text = httpx.get(base + "/metrics", trust_env=False).text
    hits, misses = (metric_value(text, "imgsearch_cache_requests_total", cache="search", result=r) for r in RESULTS)
    return hits, misses, metric_value(text, "imgsearch_cache_bytes", cache="search")


def _photo(seed: int) -> bytes:
    return encode(np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8))


def _cached(base: str, photo: bytes) -> tuple[bool, int]:
    """Whether the k=100 answer came from the cache, and its size."""
    resp = search(base, photo, k=100, timeout=60)
    assert resp.status_code == 200, resp.text
    return bool(resp.json()["cached"]), len(resp.content)


@pytest.mark.stack
def test_gateway_cache_stays_within_its_byte_bound_and_keeps_the_recently_used(
    small_cache_gateway: ServiceProcess,
) -> None:
    base = small_cache_gateway.url
    photos = [_photo(seed) for seed in range(12)]
    hits0, misses0, _ = _cache_metrics(base)
    first = search(base, photos[0], k=100, timeout=60)
    assert first.status_code == 200 and first.json()["cached"] is False
    assert BOUND / 10 < len(first.content) < BOUND / 2, len(first.content)  # several fit, not all twelve
    stored = len(first.content)
    for photo in photos[1:]:
        assert _cached(base, photos[0])[0] is True  # the oldest entry, but just used: never the one evicted
        cached, size = _cached(base, photo)
        assert cached is False
        stored += size
        _, _, held = _cache_metrics(base)
        assert 0 < held <= BOUND
    assert stored > 2 * BOUND  # so evictions did happen
    assert _cached(base, photos[1])[0] is False  # least recently used: gone
    again = search(base, photos[0], k=100).json()
    assert again["cached"] is True and again["items"] == first.json()["items"]
    hits, misses, held = _cache_metrics(base)
    assert (hits - hits0, misses - misses0) == (len(photos), len(photos) + 1)
    assert BOUND / 2 < held <= BOUND
