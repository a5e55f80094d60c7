"""One partition of a partitioned index (issue 16), and its half of the never-mixed roll-out.

A new version is loaded while the previous one keeps serving; both answer queries pinned to them
(`?version=`). The gateway switches when every partition reports the new version in /readyz; the previous one
is dropped once no query has asked for it for `partition_drop_idle_s` (the gateways have moved on), or
`partition_drop_timeout_s` after the new one loaded, whichever comes first. At most two versions are held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ann_index.serving.reader import IndexReader
from services.common.settings import IndexSettings
from services.index.holder import IndexHolder, IndexVersionGone

log = logging.getLogger("imgsearch.index")
DROP_CHECK_S = 0.5


class PartitionHolder(IndexHolder):
    """An `IndexHolder` of partition `settings.partition` that keeps the previous version during a roll-out."""

    def __init__(self, settings: IndexSettings) -> None:
        super().__init__(settings)
        self.previous: IndexReader | None = None
        self._older: IndexReader | None = None  # the previous one's predecessor, until `retire` closes it
        self.loaded_at = 0.0  # monotonic time the current version was swapped in
        self.last_use: dict[str, float] = {}

    def pick(self, version: str | None) -> IndexReader | None:
        reader, previous = self.reader, self.previous
        if version is None or reader is None:
            return reader
        for held in (reader, previous):
            if held is not None and held.version == version:
                self.last_use[version] = time.monotonic()
                return held
        raise IndexVersionGone(f"index {version} is not held by partition {self.settings.partition}")

    def held_versions(self) -> set[str]:
        return {held.version for held in (self.reader, self.previous, self._older) if held is not None}

    def keep_answering(self, old: IndexReader | None) -> None:
        """`old` becomes the previous version before the new one is current: queries pinned to it, answered on
        request threads, found neither for an instant when this came after the swap (409 mid roll-out)."""
        if old is not None:
            self._older, self.previous = self.previous, old

    async def retire(self, old: IndexReader) -> None:
        """A version older still than `old` (kept answering pinned queries) is dropped now."""
        self.loaded_at = time.monotonic()
        older, self._older = self._older, None
        if older is not None and older is not old:
            await asyncio.to_thread(older.close)

    def drop_due(self, now: float) -> bool:
        """Whether the previous version may go: unused for the idle time, or held past the timeout."""
        previous, s = self.previous, self.settings
        if previous is None:
            return False
        since_load = now - self.loaded_at
        idle = now - max(self.last_use.get(previous.version, 0.0), self.loaded_at)
        return idle >= s.partition_drop_idle_s or since_load >= s.partition_drop_timeout_s

    async def drop_old(self) -> None:
        """Drop the previous version when due (it waits for its queries still running)."""
        previous = self.previous
        if previous is not None and self.drop_due(time.monotonic()):
            self.previous = None
            self.last_use.pop(previous.version, None)
            log.info("partition %s dropped index %s", self.settings.partition, previous.version)
            await asyncio.to_thread(previous.close)

    async def poll_forever(self) -> None:
        async def drop_loop() -> None:
            while True:
                await self.drop_old()
                await asyncio.sleep(DROP_CHECK_S)

        await asyncio.gather(super().poll_forever(), drop_loop())

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """The base readiness, plus which partition this is and every version it can answer for."""
        ready, details = super().readiness()
        reader, previous = self.reader, self.previous
        of = int((reader.manifest.get("partition") or {}).get("of", 1)) if reader is not None else None
        details["partition"] = {"index": self.settings.partition, "of": of}
        details["versions"] = [r.version for r in (reader, previous) if r is not None]
        return ready, details

    def close(self) -> None:
        if self.previous is not None:
            self.previous.close()
        super().close()
