"""What the gateway knows of the index it queries: its version, its categories and the embedder it was built
with, learnt from the index's /readyz (polled, and on demand) and from every query's answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from services.common.errors import IncompatibleModels
from services.gateway.backends import Backends


class ServedIndex:
    """The served index as last seen; `on_swap` runs when its version changes (cached answers are stale)."""

    def __init__(self, backends: Backends, on_swap: Callable[[], None]) -> None:
        self.backends = backends
        self.on_swap = on_swap
        self.version: str | None = None
        self.categories: frozenset[str] | None = None
        self.embedder_sha256: str | None = None
        self.kinds: dict[str, list[str]] | None = None  # item kinds -> categories (the catalog's, #15)

    def note(self, details: dict[str, Any]) -> None:
        """Remember the version, categories and embedder of the index's /readyz answer."""
        index = details.get("index") or {}
        if index.get("version"):
            self.set_version(str(index["version"]))
            self.categories = frozenset(index.get("categories") or {})
            self.embedder_sha256 = (index.get("embedder") or {}).get("sha256")
            self.kinds = index.get("kinds") or None

    def set_version(self, version: str | None) -> None:
        """The version that answered last (a query's answer says it)."""
        if version != self.version:
            self.version = version
            self.on_swap()

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

    async def check_binding(self, embedder_model: dict[str, Any] | None) -> None:
        """Refuse to query the index with vectors of an embedder it was not built with (garbage results)."""
        if self.embedder_sha256 is None:
            await self.refresh()
        bound, serving = self.embedder_sha256, (embedder_model or {}).get("sha256")
        if bound and serving and bound != serving:
            raise IncompatibleModels(
                f"index {self.version} was built with embedder {bound[:12]}, but the embedder serves {serving[:12]}"
            )
