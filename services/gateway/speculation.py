"""The whole-image search started beside detection while the gateway is idle.

A photo in which nothing is detected (a product shot: the commonest query) is searched as a whole image. While
no other search is running the cores are idle, so the whole image is embedded and, when the photo is a product
shot (the embedder cropped it to an item on a plain background: its answer's box is not the whole photo),
searched in the index while the detector still works: when the detector finds nothing, the answer is ready
when its answer is, and neither the embed nor the index hop comes after it. A scene, which nearly always has
items, is not searched ahead: its query would be done for nothing, on every partition, on cores the detector
needs. When items are found, a whole-image query is cancelled and the embedder's kept copy of the photo serves
the crops.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from services.gateway.backends import Backends
from services.gateway.garments import categories_for
from services.gateway.regions import Region
from services.gateway.search_parts import Photo, SearchParams, consume_outcome
from services.gateway.served_index import ServedIndex


@dataclass
class Found:
    """The index's answer to the whole-image query, the categories it was asked with, and when it answered."""

    answer: dict[str, Any]
    categories: list[Any]
    at: float


class Speculation:
    """`embedded` is the whole-image embed (vectors, the embedder's answer); `found()` its index answer, or None
    when the photo is no product shot or that query failed (the caller then queries as usual and meets any
    failure itself). `embed_s` is the embed's own duration once it has answered, None before."""

    def __init__(self, backends: Backends, index: ServedIndex, photo: Photo, params: SearchParams, kept: str) -> None:
        self.embed_s: float | None = None
        self._backends, self._index, self._photo, self._kept = backends, index, photo, kept
        self.embedded: asyncio.Task[tuple[Any, dict[str, Any]]] = asyncio.create_task(self._embed())
        self.embedded.add_done_callback(consume_outcome)
        self._query: asyncio.Task[Found | None] = asyncio.create_task(self._search(params))
        self._query.add_done_callback(consume_outcome)

    async def _embed(self) -> tuple[Any, dict[str, Any]]:
        t0 = time.perf_counter()
        answer = await self._backends.embed(
            self._photo.pixels, self._photo.forward, None, foreground=True, keep=self._kept
        )
        self.embed_s = time.perf_counter() - t0
        return answer

    async def _search(self, params: SearchParams) -> Found | None:
        vectors, answer = await self.embedded
        if not _cropped(answer, self._photo):
            return None
        await self._index.check_binding(answer.get("model"))
        # The same categories as the whole-image region the search falls back to (no label, no category).
        whole = Region(box=[0.0, 0.0, 0.0, 0.0], fallback="whole_image")
        categories = categories_for([whole], await self._index.known_categories(), params.category)
        found = await self._index.query(vectors, params.k, categories, params.index_options())
        return Found(found, categories, time.perf_counter())

    async def found(self) -> Found | None:
        try:
            return await self._query
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - any failure: the caller's own query reports it
            return None

    def drop_query(self) -> None:
        """Items were detected: the whole-image query is not needed."""
        self._query.cancel()


def _cropped(answer: dict[str, Any], photo: Photo) -> bool:
    """Whether the embedder cropped the whole image to its foreground (a product shot on a plain background)."""
    boxes = answer.get("boxes") or []
    height, width = photo.forward.shape[:2]
    return bool(boxes) and [float(v) for v in boxes[0]] != [0.0, 0.0, float(width), float(height)]
