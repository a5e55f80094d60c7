"""The whole-image search beside detection (services/gateway/speculation.py), with fake backends and index."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np

from services.common.errors import IncompatibleModels
from services.gateway.search_parts import Photo, SearchParams
from services.gateway.speculation import Speculation

VECTOR = np.ones((1, 4), dtype=np.float32)


class FakeBackends:
    """The embedder crops a product shot to its item (a box inside the photo), a scene not (the whole photo)."""

    def __init__(self, cropped: bool = True) -> None:
        self.embeds: list[dict[str, Any]] = []
        self.cropped = cropped

    async def embed(self, pixels: bytes, image: np.ndarray, boxes: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.embeds.append({"boxes": boxes, **kwargs})
        height, width = image.shape[:2]
        box = [1.0, 1.0, width - 1.0, height - 1.0] if self.cropped else [0.0, 0.0, float(width), float(height)]
        return VECTOR, {"model": {"sha256": "e" * 64}, "boxes": [box]}


class FakeIndex:
    def __init__(self, bound: str = "e" * 64, delay: float = 0.0) -> None:
        self.bound, self.delay = bound, delay
        self.queries: list[tuple[int, list[Any], dict[str, Any]]] = []
        self.finished = 0

    async def check_binding(self, model: dict[str, Any] | None) -> None:
        if (model or {}).get("sha256") != self.bound:
            raise IncompatibleModels("index built with another embedder")

    async def known_categories(self) -> frozenset[str]:
        return frozenset({"Bag", "Sandal"})

    async def query(self, vectors: Any, k: int, categories: list[Any], options: dict[str, Any]) -> dict[str, Any]:
        self.queries.append((k, list(categories), options))
        await asyncio.sleep(self.delay)
        self.finished += 1
        return {"results": [[{"item_id": "a"}]], "version": "v1"}


def photo() -> Photo:
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    return Photo(8, 8, pixels, 1.0, pixels.tobytes())


def test_the_whole_image_is_embedded_kept_and_searched_with_the_callers_category() -> None:
    async def run() -> tuple[Any, FakeBackends, FakeIndex, float | None]:
        backends, index = FakeBackends(), FakeIndex()
        ahead = Speculation(backends, index, photo(), SearchParams(k=7, category="Bag"), "kept-1")  # type: ignore[arg-type]
        vectors, _ = await ahead.embedded
        assert vectors is VECTOR
        return await ahead.found(), backends, index, ahead.embed_s

    found, backends, index, embed_s = asyncio.run(run())
    assert found is not None and found.answer["version"] == "v1" and found.categories == ["Bag"]
    assert backends.embeds == [{"boxes": None, "foreground": True, "keep": "kept-1"}]
    assert [(k, categories) for k, categories, _ in index.queries] == [(7, ["Bag"])]
    assert embed_s is not None and embed_s >= 0


def test_a_scene_is_embedded_ahead_but_not_searched_ahead() -> None:
    async def run() -> tuple[Any, FakeBackends, FakeIndex]:
        backends, index = FakeBackends(cropped=False), FakeIndex()  # no foreground crop: not a product shot
        ahead = Speculation(backends, index, photo(), SearchParams(k=5), "kept-4")  # type: ignore[arg-type]
        return await ahead.found(), backends, index

    found, backends, index = asyncio.run(run())
    assert found is None and index.queries == [] and len(backends.embeds) == 1


def test_a_query_for_another_embedders_index_is_left_to_the_caller() -> None:
    async def run() -> tuple[Any, FakeIndex]:
        index = FakeIndex(bound="f" * 64)
        ahead = Speculation(FakeBackends(), index, photo(), SearchParams(k=5), "kept-2")  # type: ignore[arg-type]
        return await ahead.found(), index

    found, index = asyncio.run(run())
    assert found is None and index.queries == []  # the caller's own query meets the refusal and reports it


def test_items_detected_cancel_the_whole_image_query() -> None:
    async def run() -> FakeIndex:
        index = FakeIndex(delay=0.5)
        ahead = Speculation(FakeBackends(), index, photo(), SearchParams(k=5), "kept-3")  # type: ignore[arg-type]
        await ahead.embedded
        await asyncio.sleep(0.05)  # the query has been sent
        ahead.drop_query()
        await asyncio.sleep(0.6)
        return index

    index = asyncio.run(run())
    assert len(index.queries) == 1 and index.finished == 0


class SlowDetectorBackends:
    """The gateway's backends, faked: a detector that answers "nothing found" only once the index has been
    asked, so a search can finish only if its whole-image query runs while the detector works."""

    urls = {"detector": "http://d", "embedder": "http://e", "index": "http://i"}

    def __init__(self) -> None:
        self.queried = asyncio.Event()
        self.calls: list[str] = []

    async def readiness(self, backend: str) -> tuple[bool, dict[str, Any]]:
        index = {"version": "v1", "categories": ["Bag"], "embedder": {"sha256": "e" * 64}}
        return True, {"index": index} if backend == "index" else {}

    async def detect(self, pixels: bytes, image: np.ndarray) -> dict[str, Any]:
        self.calls.append("detect")
        await asyncio.wait_for(self.queried.wait(), timeout=10)
        self.calls.append("detected")
        return {"detections": [], "model": {"name": "d", "sha256": "d" * 64}}

    async def embed(self, pixels: bytes, image: np.ndarray, boxes: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.calls.append("embed")
        return VECTOR, {"model": {"name": "e", "sha256": "e" * 64}, "boxes": [[1, 1, 7, 7]]}

    async def query(self, vectors: Any, k: int, categories: Any, options: Any = None) -> dict[str, Any]:
        self.calls.append("query")
        self.queried.set()
        hit = {"item_id": "x", "score": 1.0, "category": "Bag", "title": "X"}
        return {"results": [[hit] * k], "version": "v1"}


def test_a_search_with_nothing_detected_is_answered_by_the_query_made_during_detection() -> None:
    from services.common.settings import GatewaySettings
    from services.common.uploads import Upload
    from services.gateway.search import SearchService
    from tests.helpers.http import encode

    backends = SlowDetectorBackends()
    service = SearchService(GatewaySettings(cache_size=0), backends)  # type: ignore[arg-type]
    upload = Upload(data=encode(np.full((32, 48, 3), 200, dtype=np.uint8)))
    body = json.loads(asyncio.run(service.search(upload, SearchParams(k=3))))
    assert body["fallback"] == "whole_image" and [h["item_id"] for h in body["items"][0]["results"]] == ["x"] * 3
    # One query, made before the detector answered; its answer is the one given.
    assert backends.calls.count("query") == 1
    assert backends.calls.index("query") < backends.calls.index("detected")
