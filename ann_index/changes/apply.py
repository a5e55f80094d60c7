"""`imgsearch items apply`: validate a changes file, embed its upserts, write it as one change object.

An attribute-only change (price, stock: the same image bytes) runs no model when the applier is given the
rebuild's embedding cache (`RebuildOptions.embedding_cache`, vectors keyed by the image's sha256 per embedder
and crop): the upsert takes the vector the rebuild stored for those bytes. Vectors it does compute go into the
cache too, so an item added between rebuilds is free to change later as well.

All or nothing: an invalid row, an unreadable image or an embedder the served version was not built with
refuses the whole batch before anything is written. Once `apply_changes` returns, the batch is durable in
the store. If a rebuild switched CURRENT while the batch was being written, the batch is also written to
the new version (keeping its origin), so a change made during a rebuild's publish is never lost; the
rebuild copies forward what was written before its switch (`ann_index.build.carry_over`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ann_index.build.embedding import BatchEmbedder, RebuildOptions, embed_items
from ann_index.catalog.rows import decode_catalog_bytes
from ann_index.changes.file import ChangeFile, parse_changes
from ann_index.thumbs import media_type
from ann_index.version.changes import Change, ChangeLogFull, Delete, Upsert, write_batch
from ann_index.version.manifest import check_embedder
from ann_index.version.publish import published_manifest, read_current
from imgcore.errors import ImgSearchError, IndexMismatch, ObjectTooLarge
from imgcore.storage import ObjectStore, as_uri, fetch_uri_bytes, open_store, resolve_uri
from imgcore.vectors import l2_normalise

log = logging.getLogger(__name__)
MAX_LISTED = 50
MAX_FILE_BYTES = 64 << 20  # a changes file of MAX_BATCH_ROWS catalog rows stays far below it


class ChangesRefused(ImgSearchError):
    """Nothing was written: the batch (or the served index) does not allow it."""

    status = 422
    reason = "changes_refused"

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclass
class Applied:
    version: str
    seq: int
    upserts: int
    deletes: int
    written_at: float
    reused: int = 0  # upserts whose vector came from the embedding cache: no model run for them
    also: list[tuple[str, int]] = field(default_factory=list)  # (version, seq) it was carried forward to

    def to_dict(self) -> dict[str, Any]:
        carried = [{"version": v, "seq": s} for v, s in self.also]
        return {
            "version": self.version,
            "seq": self.seq,
            "upserts": self.upserts,
            "deletes": self.deletes,
            "reused_vectors": self.reused,
            "carried_to": carried,
        }


def _refuse_problems(changes: ChangeFile, what: str) -> None:
    if changes.problems:
        rows = [p.to_dict() for p in changes.problems]
        shown = "; ".join(str(p) for p in changes.problems[:10])
        raise ChangesRefused(f"{len(rows)} of {changes.rows} rows {what}: {shown}", rows[:MAX_LISTED])
    if not changes.upserts and not changes.deletes:
        raise ChangesRefused("the changes file holds no rows: nothing to apply")


def served_binding(store: ObjectStore, embedder: BatchEmbedder) -> str:
    """The served version, refused unless it was built with `embedder` (its vectors live in that space)."""
    version = read_current(store)
    if version is None:
        raise ChangesRefused(f"no index published at {store.uri}: changes apply to a served version")
    try:
        check_embedder(published_manifest(store, version), embedder_sha256=embedder.sha256, dim=int(embedder.dim))
    except IndexMismatch as exc:
        raise ChangesRefused(f"refused: {exc.message}; pass the embedder the served version is bound to") from exc
    return version


def embed_changes(
    changes: ChangeFile, base_uri: str, embedder: BatchEmbedder, opts: RebuildOptions
) -> tuple[list[Change], int]:
    """The batch's rows (deletes first, then upserts in file order), every upsert embedded, or refused; and how
    many upserts took their vector from the embedding cache."""
    embedded = embed_items(changes.upserts, base_uri, embedder, opts)
    if embedded.skipped:
        raise ChangesRefused(
            f"{len(embedded.skipped)} upsert(s) could not be embedded: "
            + "; ".join(f"line {s['line']} ({s['item_id']}): {s['reason']}" for s in embedded.skipped[:10]),
            embedded.skipped[:MAX_LISTED],
        )
    vectors = l2_normalise(embedded.vectors)
    rows: list[Change] = [Delete(item_id) for _, item_id in changes.deletes]
    absolute = opts.allow_absolute_images
    for pos, item in enumerate(embedded.items):
        image = resolve_uri(base_uri, item.image, allow_absolute=absolute)
        thumb = embedded.thumbs[pos] if pos < len(embedded.thumbs) else None
        kind = media_type(thumb) if thumb is not None else "image/jpeg"
        rows.append(Upsert(item.item_id, item.category, item.title, image, item.attrs, vectors[pos], thumb, kind))
    hits = (embedded.cache_stats or {}).get("hits", 0)
    return rows, hits if isinstance(hits, int) else 0


def _read_changes(uri: str, opts: RebuildOptions) -> str:
    try:
        return decode_catalog_bytes(
            fetch_uri_bytes(uri, s3_endpoint_url=opts.s3_endpoint_url, max_bytes=MAX_FILE_BYTES)
        )
    except ObjectTooLarge as exc:
        raise ChangesRefused(f"the changes file is larger than {MAX_FILE_BYTES} bytes: split it") from exc
    except UnicodeDecodeError as exc:
        raise ChangesRefused(f"the changes file is not UTF-8: {exc.reason} at byte {exc.start}") from exc


def apply_changes(
    changes_uri: str, index_uri: str, embedder: BatchEmbedder, opts: RebuildOptions | None = None
) -> Applied:
    """Validate, embed and write one batch to the served version's change log; raise ChangesRefused."""
    opts = opts or RebuildOptions()
    uri = as_uri(changes_uri)
    changes = parse_changes(_read_changes(uri, opts))
    _refuse_problems(changes, "are invalid")
    with open_store(as_uri(index_uri), s3_endpoint_url=opts.s3_endpoint_url) as store:
        version = served_binding(store, embedder)
        rows, reused = embed_changes(changes, uri.rsplit("/", 1)[0] + "/", embedder, opts)
        sha, dim = embedder.sha256, int(embedder.dim)
        now = time.time()
        try:
            seq = write_batch(store, version, rows, embedder_sha256=sha, dim=dim, written_at=now)
        except ChangeLogFull as exc:
            raise ChangesRefused(exc.message) from exc
        applied = Applied(version, seq, len(changes.upserts), len(changes.deletes), now, reused)
        log.info(
            "applied %d upserts (%d vectors from the embedding cache) and %d deletes as change %s/%d",
            *(applied.upserts, reused, applied.deletes, version, seq),
        )
        _follow_current(store, applied, rows, sha, dim)
        return applied


def _follow_current(store: ObjectStore, applied: Applied, rows: list[Change], sha: str, dim: int) -> None:
    """A rebuild may have switched CURRENT while this batch was written: write it to the new version too."""
    origin, written = f"{applied.version}/{applied.seq}", applied.version
    current = read_current(store)
    while current is not None and current != written:
        manifest = published_manifest(store, current)
        if manifest["embedder"].get("sha256") != sha:
            log.warning("change %s not copied to %s: that version has another embedder", origin, current)
            return
        seq = write_batch(
            store, current, rows, embedder_sha256=sha, dim=dim, written_at=applied.written_at, origin=origin
        )
        applied.also.append((current, seq))
        written, current = current, read_current(store)
