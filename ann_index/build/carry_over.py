"""A rebuild's carry-over of catalog changes: nothing applied between the catalog snapshot and the publish is lost.

The new version is built from the catalog snapshot, so changes written before the snapshot are already in it
(superseded) and changes written after it are copied into the new version's change log, in order, keeping
their origin and write time. The copy runs twice: before CURRENT moves (most of them, so replicas replay
them before they serve the new version) and after (what landed on the old version meanwhile). An applier
whose write lands after that second copy sees CURRENT moved and copies its batch itself
(`ann_index.changes.apply`); a batch copied by both is applied once (replicas skip a known origin).
A new version bound to another embedder gets the carried upserts embedded again from their images.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import cast

from ann_index.build.embedding import BatchEmbedder, RebuildOptions, embed_items
from ann_index.catalog.rows import CatalogItem
from ann_index.version.changes import BadChange, Change, ChangeBatch, Upsert, list_changes, read_batch, write_batch
from ann_index.version.manifest import EmbedderInfo
from ann_index.version.publish import published_manifest, read_current
from imgcore.errors import StoreError
from imgcore.storage import ObjectStore
from imgcore.vectors import l2_normalise

log = logging.getLogger(__name__)


@dataclass
class CarryOver:
    """Copies the change batches written after `since` (epoch seconds) from the served version to `new`."""

    store: ObjectStore
    new: str
    embedder: EmbedderInfo
    since: float
    opts: RebuildOptions = field(default_factory=RebuildOptions)
    source: str | None = None  # the version copied from: CURRENT at the first copy
    copied: set[str] = field(default_factory=set)  # origins already copied
    superseded: int = 0

    def copy(self, attempts: int = 3) -> int:
        """Copy what is new since the last call; the number of batches copied. Store trouble is retried: after
        CURRENT moved, a failed copy would lose the batches written since the first one."""
        for attempt in range(1, attempts + 1):
            try:
                return self._copy()
            except StoreError as exc:
                if attempt == attempts:
                    raise
                log.warning("carry-over from %s failed (attempt %d of %d): %s", self.source, attempt, attempts, exc)
                time.sleep(attempt)
        return 0

    def _copy(self) -> int:
        if self.source is None:
            self.source = read_current(self.store)
            if self.source is None or self.source == self.new:
                return 0
        if self.source == self.new:
            return 0
        old = published_manifest(self.store, self.source)["embedder"]
        count = 0
        for seq, _key in list_changes(self.store, self.source):
            try:
                batch = read_batch(self.store, self.source, seq, embedder_sha256=old["sha256"], dim=int(old["dim"]))
            except BadChange as exc:  # replicas refuse it too: nothing to carry
                log.error("not carried over: %s", exc.message)
                continue
            if batch.origin in self.copied:
                continue
            self.copied.add(batch.origin)
            if batch.written_at <= self.since:
                self.superseded += 1
                continue
            rows = batch.rows if batch.embedder_sha256 == self.embedder.sha256 else self._reembedded(batch)
            write_batch(
                self.store,
                self.new,
                rows,
                embedder_sha256=self.embedder.sha256,
                dim=int(self.embedder.dim),
                written_at=batch.written_at,
                origin=batch.origin,
            )
            count += 1
        log.info(
            "carried %d change batches from %s to %s (%d superseded)", count, self.source, self.new, self.superseded
        )
        return count

    def _reembedded(self, batch: ChangeBatch) -> list[Change]:
        """The batch's rows with every upsert embedded again by the new version's embedder."""
        if not hasattr(self.embedder, "run"):
            raise StoreError(f"change {batch.origin} needs embedding again, but no embedder was given to do it")
        embedder = cast(BatchEmbedder, self.embedder)  # it has run(): the rebuild's own embedder
        upserts = [row for row in batch.rows if isinstance(row, Upsert)]
        items = [CatalogItem(i, u.item_id, u.image, u.category, u.title, u.attrs) for i, u in enumerate(upserts)]
        opts = RebuildOptions(
            workers=self.opts.workers,
            model_lanes=self.opts.model_lanes,
            s3_endpoint_url=self.opts.s3_endpoint_url,
            progress=False,
            allow_absolute_images=True,
        )
        embedded = embed_items(items, "file:///", embedder, opts)
        vectors = {item.item_id: vec for item, vec in zip(embedded.items, l2_normalise(embedded.vectors), strict=True)}
        out: list[Change] = []
        for row in batch.rows:
            if not isinstance(row, Upsert):
                out.append(row)
            elif row.item_id in vectors:
                out.append(replace(row, vector=vectors[row.item_id]))
            else:
                log.error("change %s: upsert %s could not be embedded again; not carried", batch.origin, row.item_id)
        return out
