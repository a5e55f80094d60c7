"""The search pipeline of the gateway: decode once -> detect -> embed crops -> query the index.

Pixels travel to the detector and embedder raw (decoded once here); crops travel as boxes. When nothing is
detected, or the detector fails or is too slow, the whole image (cropped to its foreground) is searched
instead and the response says `"fallback": "whole_image"`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import cv2
import numpy as np
from starlette.concurrency import run_in_threadpool

from imgcore.errors import ImgSearchError
from services.common.boxes import Box, clip_box
from services.common.errors import IncompatibleModels
from services.common.metrics import FALLBACKS, STAGE_SECONDS
from services.common.settings import GatewaySettings
from services.common.uploads import Upload, decode_upload
from services.common.wire import rgb_body
from services.gateway.backends import Backends
from services.gateway.cache import LRUCache

log = logging.getLogger("imgsearch.gateway")


@dataclass(frozen=True)
class SearchParams:
    """What the caller asked for besides the image."""

    k: int
    category: str | None = None
    box: Box | None = None


@dataclass
class _Regions:
    """What detection and embedding produced for one photo."""

    items: list[dict[str, Any]]
    vectors: np.ndarray
    detect_s: float
    detector_model: dict[str, Any] | None
    embedder_model: dict[str, Any] | None
    source: str  # detector, user_box, detector_error, detector_timeout


def public_result(hit: dict[str, Any]) -> dict[str, Any]:
    """An index hit as the public API shows it (thumbnail through the gateway, no internal URIs)."""
    return {
        "item_id": hit["item_id"],
        "score": round(float(hit["score"]), 4),
        "category": hit["category"],
        "title": hit["title"],
        "image_url": f"/v1/items/{quote(str(hit['item_id']), safe='')}/image",
        "attrs": hit.get("attrs", {}),
    }


def _forwardable(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float, bytes]:
    """The image to forward (at most `max_side` pixels wide or high), its scale to the original, its bytes."""
    h, w = image.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return image, 1.0, rgb_body(image)
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    return small, scale, rgb_body(small)


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a speculative task's outcome so an unused failure is not reported as unhandled."""
    if not task.cancelled():
        task.exception()


def _scaled(box: Box | list[float], factor: float) -> list[float]:
    return [round(float(v) * factor, 1) for v in box]


class SearchService:
    """Runs searches and keeps the result cache and what the gateway knows about the index."""

    def __init__(self, settings: GatewaySettings, backends: Backends) -> None:
        self.settings = settings
        self.backends = backends
        self.limits = settings.decode_limits()
        self.cache: LRUCache[tuple[Any, ...], dict[str, Any]] = LRUCache("search", settings.cache_size)
        self.index_version: str | None = None
        self.index_categories: frozenset[str] | None = None
        self.index_embedder_sha256: str | None = None
        self._inflight = 0

    def note_index(self, details: dict[str, Any]) -> None:
        """Remember the served index's version and categories (from the index's /readyz)."""
        index = details.get("index") or {}
        if index.get("version"):
            self._set_version(str(index["version"]))
            self.index_categories = frozenset(index.get("categories") or {})
            self.index_embedder_sha256 = (index.get("embedder") or {}).get("sha256")

    def _set_version(self, version: str | None) -> None:
        if version != self.index_version:
            self.index_version = version
            self.cache.clear()  # entries of the old version can never be hit again

    async def _refresh_index(self) -> None:
        ready, details = await self.backends.readiness("index")
        if ready:
            self.note_index(details)

    async def watch_index(self, every_s: float) -> None:
        """Follow the index version (so cached results never outlive a swap by more than `every_s`)."""
        while True:
            await self._refresh_index()
            await asyncio.sleep(every_s)

    async def _categories(self, version: str) -> frozenset[str]:
        if self.index_categories is None or version != self.index_version:
            await self._refresh_index()
        return self.index_categories or frozenset()

    async def _check_binding(self, embedder_model: dict[str, Any] | None) -> None:
        """Refuse to query the index with vectors of an embedder it was not built with (garbage results)."""
        if self.index_embedder_sha256 is None:
            await self._refresh_index()
        bound, serving = self.index_embedder_sha256, (embedder_model or {}).get("sha256")
        if bound and serving and bound != serving:
            raise IncompatibleModels(
                f"index {self.index_version} was built with embedder {bound[:12]}, "
                f"but the embedder serves {serving[:12]}"
            )

    async def search(self, upload: Upload, params: SearchParams) -> dict[str, Any]:
        """The `/v1/search` response for one uploaded photo."""
        t_start = time.perf_counter()
        raw = upload.data if upload.data is not None else b"" if upload.pixels is None else upload.pixels.tobytes()
        key = (hashlib.sha256(raw).hexdigest(), params, self.index_version)
        cached = self.cache.get(key)
        if cached is not None:
            total = (time.perf_counter() - t_start) * 1e3
            timings = {"decode": 0.0, "detect": 0.0, "embed": 0.0, "search": 0.0, "total": total}
            return {**cached, "cached": True, "timings_ms": timings}
        image = await decode_upload(upload, self.limits)
        forward, scale, pixels = await run_in_threadpool(_forwardable, image, self.settings.forward_max_side)
        t_decoded = time.perf_counter()

        regions = await self._embed_regions(image, forward, scale, pixels, params)
        items = regions.items
        fallback = any(item.get("fallback") for item in items)
        t_embedded = time.perf_counter()
        await self._check_binding(regions.embedder_model)

        if params.category is not None:
            categories: list[str | None] = [params.category] * len(items)
        else:
            known = await self._categories(self.index_version or "")
            categories = [item["category"] if item["category"] in known else None for item in items]
        found = await self.backends.query(regions.vectors, params.k, categories)
        t_searched = time.perf_counter()
        self._set_version(found.get("version"))
        for item, hits, category in zip(items, found["results"], categories, strict=True):
            item["searched_category"] = category
            item["results"] = [public_result(h) for h in hits]
        items.sort(key=lambda it: -(it["score"] if it["score"] is not None else 2.0))

        t_detected = t_decoded + regions.detect_s
        timings = {
            "decode": (t_decoded - t_start) * 1e3,
            "detect": (t_detected - t_decoded) * 1e3,
            "embed": (t_embedded - t_detected) * 1e3,
            "search": (t_searched - t_embedded) * 1e3,
            "total": (t_searched - t_start) * 1e3,
        }
        for stage, ms in timings.items():
            STAGE_SECONDS.labels(stage=stage).observe(ms / 1e3)
        body: dict[str, Any] = {
            "items": items,
            "index_version": found.get("version"),
            "models": {"detector": regions.detector_model, "embedder": regions.embedder_model},
            "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
            "cached": False,
            "timings_ms": timings,
        }
        if fallback:  # also said at the top level, so a client need not look inside items
            body["fallback"] = "whole_image"
        if regions.source in ("detector", "user_box"):  # never cache an answer shaped by a backend failure
            self.cache.put((key[0], params, body["index_version"]), body)
        return body

    async def _embed_regions(
        self, image: np.ndarray, forward: np.ndarray, scale: float, pixels: bytes, params: SearchParams
    ) -> _Regions:
        """Detect (or take the user's box), then embed each region — or the whole image when there is none.

        While no other search is running, the whole-image embedding starts alongside detection (the cores
        are idle), so a photo with nothing detected costs no extra round trip.
        """
        t0 = time.perf_counter()
        speculative = None
        if params.box is None and self._inflight < self.settings.speculate_max_inflight:
            speculative = asyncio.create_task(self.backends.embed(pixels, forward, None, foreground=True))
            speculative.add_done_callback(_consume)
        self._inflight += 1
        try:
            items, detector_model, source = await self._items(image, forward, scale, pixels, params)
            detect_s = time.perf_counter() - t0
            if not items and speculative is not None:
                vectors, embedded = await speculative
            else:
                boxes = [_scaled(item["box"], scale) for item in items] if items else None
                vectors, embedded = await self.backends.embed(pixels, forward, boxes, foreground=not items)
        finally:
            self._inflight -= 1
        if not items:
            FALLBACKS.labels(why="no_detections" if source == "detector" else source).inc()
            used = embedded.get("boxes") or [[0, 0, forward.shape[1], forward.shape[0]]]
            box = _scaled(used[0], 1 / scale)
            items = [{"label": None, "category": None, "score": None, "box": box, "fallback": "whole_image"}]
        return _Regions(items, vectors, detect_s, detector_model, embedded.get("model"), source)

    async def _items(
        self, image: np.ndarray, forward: np.ndarray, scale: float, pixels: bytes, params: SearchParams
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, str]:
        """The regions to search (boxes in original pixels), the detector's model, and where they came from."""
        if params.box is not None:
            box = clip_box(params.box, int(image.shape[1]), int(image.shape[0]))
            item = {"label": None, "category": None, "score": None, "box": list(box), "source": "user_box"}
            return [item], None, "user_box"
        try:
            detected = await self.backends.detect(pixels, forward)
        except ImgSearchError as exc:  # unavailable, timed out, refused: degrade to the whole image
            log.warning("detector failed, searching the whole image: %s", exc.message)
            return [], None, "detector_timeout" if exc.status == 504 else "detector_error"
        items = []
        for det in detected.get("detections", []):
            x1, y1, x2, y2 = _scaled(det["box"], 1 / scale)
            if x2 - x1 < self.settings.min_item_px or y2 - y1 < self.settings.min_item_px:
                continue
            items.append(
                {"label": det["label"], "category": det.get("category"), "score": det["score"], "box": [x1, y1, x2, y2]}
            )
        items.sort(key=lambda it: -float(it["score"]))
        return items[: self.settings.max_items], detected.get("model"), "detector"
