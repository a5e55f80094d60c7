"""The index service's side of the change log: replay before a version is served, then follow it.

Each served reader has its own fresh index (`ann_index.serving.fresh.FreshIndex`), built by replaying every change
object of its version before the reader is swapped in, so a replica is never ready without the changes the
store holds. A poll every `changes_poll_seconds` applies new objects in sequence. A damaged or foreign object
is refused, logged and counted once, and never stops the ones after it; a store failure stops the poll at
that object so it is retried, never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from ann_index.serving.fresh import FreshIndex
from ann_index.serving.fresh_view import FreshView
from ann_index.serving.reader import IndexReader
from ann_index.version.changes import BadChange, changes_after, read_batch
from imgcore.index_wire import partition_of
from imgcore.storage import ObjectStore
from services.common.metrics import INDEX_CHANGE_LAG_SECONDS, INDEX_CHANGES, INDEX_FRESH_ITEMS, INDEX_HIDDEN_ITEMS

log = logging.getLogger("imgsearch.index.changes")
MAX_REFUSALS_SHOWN = 10


def partition_filter(partition: int | None, manifest: dict[str, Any]) -> Callable[[str], bool] | None:
    """Which upserts (by product key, issue 28) partition `partition` of a version split
    `manifest["partition"]["of"]` ways holds."""
    count = int((manifest.get("partition") or {}).get("of", 1))
    if partition is None or count <= 1:
        return None
    return lambda product: partition_of(product, count) == partition


class ChangeFollower:
    """Fresh indexes of the readers being served (or about to be), kept up to date from the store."""

    def __init__(self, partition: int | None = None) -> None:
        # A partition replica (issue 16) holds only the upserts of its own items; None: all of them.
        self.partition = partition
        self._fresh: weakref.WeakKeyDictionary[IndexReader, FreshIndex] = weakref.WeakKeyDictionary()
        self.refused: dict[str, str] = {}  # change object URL -> why
        self.last_error: str | None = None

    def fresh_of(self, reader: IndexReader) -> FreshIndex:
        fresh = self._fresh.get(reader)
        if fresh is None:
            fresh = self._fresh.setdefault(reader, self._new_fresh(reader))
        return fresh

    def _new_fresh(self, reader: IndexReader) -> FreshIndex:
        return FreshIndex(reader.dim, partition_filter(self.partition, reader.manifest), reader.holds)

    def view(self, reader: IndexReader) -> FreshView:
        return FreshView(reader, self.fresh_of(reader))

    def replay(self, store: ObjectStore, reader: IndexReader) -> int:
        """Apply every change object of the reader's version (before it is served); the number applied."""
        fresh = self._new_fresh(reader)
        applied = self._apply_new(store, reader, fresh, live=False)
        self._fresh[reader] = fresh
        log.info("index %s: replayed %d change objects (%d fresh items)", reader.version, applied, fresh.size)
        self._gauges(fresh)
        return applied

    def poll(self, store: ObjectStore, reader: IndexReader) -> int:
        """Apply the reader's new change objects; the number applied."""
        fresh = self.fresh_of(reader)
        applied = self._apply_new(store, reader, fresh, live=True)
        if applied:
            self._gauges(fresh)
        return applied

    def _apply_new(self, store: ObjectStore, reader: IndexReader, fresh: FreshIndex, *, live: bool) -> int:
        emb = reader.manifest["embedder"]
        applied = 0
        for seq, key in changes_after(store, reader.version, fresh.applied_seq):
            url = store.url_of(key)
            if url in self.refused:
                continue
            try:
                batch = read_batch(store, reader.version, seq, embedder_sha256=emb["sha256"], dim=reader.dim)
            except BadChange as exc:
                self.refused[url] = exc.message
                INDEX_CHANGES.labels(result="refused").inc()
                log.error("change object refused, skipped: %s", exc.message)
                continue
            if fresh.apply(batch):
                applied += 1
                INDEX_CHANGES.labels(result="applied").inc()
                if live and batch.origin == f"{batch.index_version}/{batch.seq}":
                    # A batch carried over from an older version keeps its first write time: not this lag.
                    INDEX_CHANGE_LAG_SECONDS.observe(max(0.0, time.time() - batch.written_at))
            else:
                INDEX_CHANGES.labels(result="duplicate").inc()
        return applied

    def _gauges(self, fresh: FreshIndex) -> None:
        INDEX_FRESH_ITEMS.set(fresh.size)
        INDEX_HIDDEN_ITEMS.set(len(fresh.hidden))

    def details(self, reader: IndexReader) -> dict[str, Any]:
        """What /readyz says of the changes applied to the served version."""
        fresh = self.fresh_of(reader)
        out: dict[str, Any] = {"seq": fresh.applied_seq, "fresh_items": fresh.size, "hidden_items": len(fresh.hidden)}
        if self.refused:
            out["refused"] = [
                {"object": url, "error": why} for url, why in list(self.refused.items())[:MAX_REFUSALS_SHOWN]
            ]
        if self.last_error:
            out["error"] = self.last_error
        return out

    async def follow(
        self, store: Callable[[], ObjectStore], reader: Callable[[], IndexReader | None], every_s: float
    ) -> None:
        """Poll the served reader's change log every `every_s` seconds until cancelled; 0 never polls."""
        while every_s > 0:
            served = reader()
            if served is not None:
                try:
                    await asyncio.to_thread(self.poll, store(), served)
                    self.last_error = None
                except Exception as exc:  # store trouble: keep serving what was applied, retry next time
                    if self.last_error is None:
                        log.warning("change poll failed: %s", exc)
                    self.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(every_s)
