"""What the gateway knows of the index it queries: its version, its categories and the embedder it was built
with, learnt from the index's /readyz (polled, and on demand) and from every query's answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

from imgcore.index_wire import GROUP_PRODUCT, CategorySpec, product_key
from services.common.errors import IncompatibleModels
from services.gateway.backends import Backends
from services.gateway.dedupe import Drop, asked_k, finish, query_options


def applied_changes(details: dict[str, Any]) -> int | None:
    """The change sequence number an index's /readyz says it applied to its version (issue 17)."""
    changes = (details.get("index") or {}).get("changes")
    return int(changes["seq"]) if isinstance(changes, dict) and "seq" in changes else None


def least_changes(states: list[tuple[bool, dict[str, Any]]]) -> int | None:
    """What every reachable partition has applied (they share one change log): a partitioned gateway's seq."""
    seqs = [applied_changes(body) for ok, body in states if ok]
    return min((s for s in seqs if s is not None), default=None)


class ServedIndex:
    """The served index as last seen; `on_swap` runs when its version changes (cached answers are stale)."""

    def __init__(self, backends: Backends, on_swap: Callable[[], None]) -> None:
        self.backends = backends
        self.on_swap = on_swap
        self.version: str | None = None
        self.changes: int | None = None  # the last catalog change applied to that version (issue 17)
        self.answered: str | None = None  # the state of the last answer: what it may be cached under
        self.categories: frozenset[str] | None = None
        self.embedder_sha256: str | None = None
        self.kinds: dict[str, list[str]] | None = None  # item kinds -> categories (the catalog's, #15)

    def note(self, details: dict[str, Any]) -> None:
        """Remember the version, categories and embedder of the index's /readyz answer."""
        index = details.get("index") or {}
        if index.get("version"):
            self.set_version(str(index["version"]), applied_changes(details))
            self.categories = frozenset(index.get("categories") or {})
            self.embedder_sha256 = (index.get("embedder") or {}).get("sha256")
            self.kinds = index.get("kinds") or None

    def set_version(self, version: str | None, changes: int | None = None) -> None:
        """The version that answered last (a query's answer says it), and the last change it had applied.

        Changes only move forward: a replica still behind does not take the state back, and its answer is
        not cached (`answered` differs from `state`).
        """
        if version != self.version:
            self.version, self.changes = version, changes
            self.on_swap()
        elif changes is not None and (self.changes is None or changes > self.changes):
            self.changes = changes
            self.on_swap()
        self.answered = self.state_of(version, changes)

    @property
    def state(self) -> str | None:
        """What cached answers are keyed by: the version and the changes applied to it."""
        return self.state_of(self.version, self.changes)

    @staticmethod
    def state_of(version: str | None, changes: int | None) -> str | None:
        return None if version is None else f"{version}+{changes or 0}"

    async def refresh(self) -> None:
        """Ask the index now (a not-ready index changes nothing)."""
        ready, details = await self.backends.readiness("index")
        if ready:
            self.note(details)

    async def watch(self, every_s: float) -> None:
        """Follow the version (so cached results never outlive a swap by more than `every_s`)."""
        while True:
            await self.refresh()
            await asyncio.sleep(every_s)

    async def known_categories(self) -> frozenset[str]:
        """The categories the index can filter by (asked for when not known yet)."""
        if self.categories is None or self.version is None:
            await self.refresh()
        return self.categories or frozenset()

    async def query(
        self,
        vectors: np.ndarray,
        k: int,
        categories: Sequence[CategorySpec],
        options: dict[str, Any] | None = None,
        drop: Drop | None = None,
    ) -> dict[str, Any]:
        """Top-k hits per vector from the index (a partitioned index merges its partitions'); `options` are the
        index query's filter, group and with_prints (near-duplicates collapsed here, after `drop`)."""
        found = await self._answer(vectors, asked_k(k + (drop is not None), options), categories, options)
        found["results"] = finish(found["results"], k, options, drop)
        return found

    async def _answer(
        self, vectors: np.ndarray, k: int, categories: Sequence[CategorySpec], options: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The index's top-k per vector, as asked."""
        return await self.backends.query(vectors, k, categories, options=options)

    async def similar(self, item_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """The index's answer for a catalog item's similar items; with `dedupe`, the item's vector queried here
        so near-duplicates collapse as on search."""
        if not params.get("dedupe"):
            return await self.backends.get_json("index", f"/v1/items/{item_path(item_id)}/similar", params)
        found = await self.backends.get_json("index", f"/v1/items/{item_path(item_id)}")
        k, options = int(params["k"]), similar_options(params)
        vector = np.asarray(found["vector"], dtype=np.float32)[None, :]
        merged = await self.query(vector, k, [params.get("category")], options, drop=itself(found["item"], options))
        return {**merged, "item": found["item"], "results": merged.pop("results")[0]}

    async def image(self, item_id: str) -> bytes:
        """A catalog item's thumbnail from the index."""
        return await self.backends.get_bytes("index", f"/v1/items/{item_path(item_id)}/image")

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """The index's /readyz (never raises)."""
        return await self.backends.readiness("index")

    async def check_binding(self, embedder_model: dict[str, Any] | None) -> None:
        """Refuse to query the index with vectors of an embedder it was not built with (garbage results)."""
        if self.embedder_sha256 is None:
            await self.refresh()
        bound, serving = self.embedder_sha256, (embedder_model or {}).get("sha256")
        if bound and serving and bound != serving:
            raise IncompatibleModels(
                f"index {self.version} was built with embedder {bound[:12]}, but the embedder serves {serving[:12]}"
            )


def similar_options(params: dict[str, Any]) -> dict[str, Any]:
    """The index query options of a similar-items request's parameters."""
    return query_options(params.get("filter"), params.get("group") or GROUP_PRODUCT, bool(params.get("dedupe")))


def itself(item: dict[str, Any], options: dict[str, Any]) -> Drop:
    """Similar items leave the item itself out and, grouped by product, its own product."""
    own = product_key(str(item["item_id"]), item.get("attrs"))
    grouped = options.get("group") == GROUP_PRODUCT
    return lambda h: h["item_id"] == item["item_id"] or (grouped and h.get("product_id") == own)


def item_path(item_id: str) -> str:
    """An item id as one URL path segment."""
    return quote(item_id, safe="")
