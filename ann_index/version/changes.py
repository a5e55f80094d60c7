"""Change objects: catalog upserts and deletes applied between rebuilds, stored beside the version they change.

`versions/<version>/changes/<seq>.json`, one immutable object per applied batch, numbered 1, 2, ... The
store is the single source of truth: a replica rebuilds its fresh index by reading them in order. An object
is written with create-if-absent (`ObjectStore.put_new`), so two appliers racing for one sequence number
cannot overwrite each other: the loser takes the next number. Each object starts with a header line naming
the sha256 of the body that follows, so a truncated or altered object is refused, never half applied.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ann_index.version.publish import check_version, version_key
from imgcore.errors import ImgSearchError, IndexMismatch, StoreError
from imgcore.storage import ObjectStore

MAGIC = "imgsearch-changes"
FORMAT = 1
CHANGES_DIR = "changes/"
SEQ_DIGITS = 12
MAX_CLAIMS = 1000  # sequence numbers one write tries before giving up (each loss means another batch landed)
MAX_SEQ = 10**SEQ_DIGITS - 1  # a longer name would never be listed: the batch would be lost
MAX_BATCH_ROWS = 10_000  # rows of one change object: `items apply` refuses more, a replica refuses the object


class BadChange(IndexMismatch):
    """A change object that is damaged, or that belongs to another version or embedder: refused, not applied."""

    reason = "bad_change"


class ChangeLogFull(ImgSearchError, status=409, reason="change_log_full"):
    """The version's log has an object at the last sequence number its names can hold: nothing is written."""


@dataclass(frozen=True)
class Upsert:
    item_id: str
    category: str
    title: str
    image: str  # absolute URI
    attrs: dict[str, Any]
    vector: np.ndarray  # float32 [dim], L2-normalised
    thumb: bytes | None = None  # JPEG or WebP, like thumbs.bin's entries
    media_type: str = "image/jpeg"


@dataclass(frozen=True)
class Delete:
    item_id: str


Change = Upsert | Delete


@dataclass(frozen=True)
class ChangeBatch:
    """One change object's content. `origin` and `written_at` survive a carry-over to a newer version, so a
    batch copied twice is applied once and an older write never overrides a newer one."""

    index_version: str
    seq: int
    written_at: float  # epoch seconds when the first applier wrote it
    origin: str  # "<version>/<seq>" where it was first written
    embedder_sha256: str
    dim: int
    rows: list[Change] = field(default_factory=list)


def change_key(version: str, seq: int) -> str:
    return version_key(version, f"{CHANGES_DIR}{seq:0{SEQ_DIGITS}d}.json")


def seq_of_key(key: str) -> int | None:
    """The sequence number of a change object's key; None for anything else under changes/."""
    name = key.rsplit("/", 1)[-1]
    stem, dot, ext = name.partition(".")
    if dot and ext == "json" and len(stem) == SEQ_DIGITS and stem.isdigit():
        return int(stem)
    return None


def list_changes(store: ObjectStore, version: str) -> list[tuple[int, str]]:
    """(seq, key) of the version's change objects, in sequence order."""
    found = [(seq_of_key(key), key) for key in store.list(version_key(check_version(version), CHANGES_DIR))]
    return sorted((seq, key) for seq, key in found if seq is not None)


def changes_after(store: ObjectStore, version: str, after: int) -> list[tuple[int, str]]:
    """(seq, key) of the version's change objects numbered above `after`, in sequence order.

    A store that cannot list (HTTP) is asked for the next numbers in turn until one is missing: the log has
    no gaps, since `write_batch` claims each number create-if-absent and retries on the next one.
    """
    if store.listable:
        return [(seq, key) for seq, key in list_changes(store, version) if seq > after]
    found: list[tuple[int, str]] = []
    seq = after + 1
    while store.exists(change_key(check_version(version), seq)):
        found.append((seq, change_key(version, seq)))
        seq += 1
    return found


def _row_dict(row: Change) -> dict[str, Any]:
    if isinstance(row, Delete):
        return {"op": "delete", "item_id": row.item_id}
    out: dict[str, Any] = {
        "op": "upsert",
        "item_id": row.item_id,
        "category": row.category,
        "title": row.title,
        "image": row.image,
        "attrs": row.attrs,
        "vector": base64.b64encode(np.asarray(row.vector, dtype="<f4").tobytes()).decode("ascii"),
    }
    if row.thumb is not None:
        out["thumb"] = base64.b64encode(row.thumb).decode("ascii")
        out["media_type"] = row.media_type
    return out


def encode_batch(batch: ChangeBatch) -> bytes:
    body = json.dumps(
        {
            "index_version": batch.index_version,
            "seq": batch.seq,
            "written_at": batch.written_at,
            "origin": batch.origin,
            "embedder_sha256": batch.embedder_sha256,
            "dim": batch.dim,
            "rows": [_row_dict(row) for row in batch.rows],
        },
        ensure_ascii=False,
        sort_keys=True,
    ).encode("utf-8")
    header = json.dumps({"format": MAGIC, "version": FORMAT, "sha256": hashlib.sha256(body).hexdigest()})
    return header.encode("ascii") + b"\n" + body


def _parse_row(raw: Any, dim: int) -> Change:
    if not isinstance(raw, dict) or not isinstance(raw.get("item_id"), str) or not raw["item_id"]:
        raise ValueError("a row without an item_id")
    if raw.get("op") == "delete":
        return Delete(raw["item_id"])
    if raw.get("op") != "upsert":
        raise ValueError(f"unknown op {raw.get('op')!r}")
    vector = np.frombuffer(base64.b64decode(raw["vector"], validate=True), dtype="<f4").astype(np.float32)
    if vector.shape != (dim,) or not np.isfinite(vector).all():
        raise ValueError(f"item {raw['item_id']!r}: vector is not {dim} finite floats")
    thumb = base64.b64decode(raw["thumb"], validate=True) if raw.get("thumb") else None
    attrs = raw.get("attrs") or {}
    if not all(isinstance(raw.get(k), str) for k in ("category", "title", "image")) or not isinstance(attrs, dict):
        raise ValueError(f"item {raw['item_id']!r}: category, title, image must be strings, attrs an object")
    return Upsert(
        raw["item_id"],
        raw["category"],
        raw["title"],
        raw["image"],
        attrs,
        vector,
        thumb,
        str(raw.get("media_type") or "image/webp"),
    )


def _parse_body(body: bytes) -> ChangeBatch:
    doc = json.loads(body)
    if len(doc["rows"]) > MAX_BATCH_ROWS:
        raise ValueError(f"{len(doc['rows'])} rows, more than {MAX_BATCH_ROWS}")
    return ChangeBatch(
        str(doc["index_version"]),
        int(doc["seq"]),
        float(doc["written_at"]),
        str(doc["origin"]),
        str(doc["embedder_sha256"]),
        int(doc["dim"]),
        [_parse_row(r, int(doc["dim"])) for r in doc["rows"]],
    )


def decode_batch(data: bytes, where: str, *, version: str, seq: int, embedder_sha256: str, dim: int) -> ChangeBatch:
    """Verify and parse a change object read from `where`; BadChange when it is damaged or foreign."""
    head, newline, body = data.partition(b"\n")
    try:
        header = json.loads(head)
        ok = newline and header.get("format") == MAGIC and header.get("version") == FORMAT
    except Exception:  # whatever a forged header raises (RecursionError included) refuses it
        ok = False
    if not ok:
        raise BadChange(f"{where}: not an imgsearch change object (format {FORMAT})")
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise BadChange(f"{where}: body does not match its sha256: damaged or altered")
    try:
        batch = _parse_body(body)
    except Exception as exc:  # a body nested 5,000 deep raises RecursionError: refused all the same
        raise BadChange(f"{where}: unreadable change object: {type(exc).__name__}: {exc}") from exc
    if (batch.index_version, batch.seq) != (version, seq):
        raise BadChange(f"{where}: holds change {batch.index_version}/{batch.seq}, not {version}/{seq}")
    if (batch.embedder_sha256, batch.dim) != (embedder_sha256, dim):
        raise BadChange(
            f"{where}: embedded by {batch.embedder_sha256[:12]} (dim {batch.dim}), the index by "
            f"{embedder_sha256[:12]} (dim {dim})"
        )
    if not math.isfinite(batch.written_at):
        raise BadChange(f"{where}: written_at is not a time")
    return batch


def read_batch(store: ObjectStore, version: str, seq: int, *, embedder_sha256: str, dim: int) -> ChangeBatch:
    key = change_key(version, seq)
    data = store.get_bytes(key)
    return decode_batch(data, store.url_of(key), version=version, seq=seq, embedder_sha256=embedder_sha256, dim=dim)


def write_batch(
    store: ObjectStore,
    version: str,
    rows: list[Change],
    *,
    embedder_sha256: str,
    dim: int,
    written_at: float | None = None,
    origin: str | None = None,
) -> int:
    """Append one batch to `version`'s change log under the next free sequence number; return that number.

    `written_at` and `origin` are given when a batch is carried over from an older version.
    """
    start = time.time() if written_at is None else written_at
    for _ in range(MAX_CLAIMS):
        known = list_changes(store, version)
        seq = (known[-1][0] if known else 0) + 1
        if seq > MAX_SEQ:
            raise ChangeLogFull(
                f"{store.url_of(known[-1][1])} holds the last sequence number a change object of {version} can "
                "have: nothing written; a rebuild publishes a new version with a new log"
            )
        batch = ChangeBatch(version, seq, start, origin or f"{version}/{seq}", embedder_sha256, dim, rows)
        if store.put_new(change_key(version, seq), encode_batch(batch)):
            return seq
    raise StoreError(f"{store.uri}: no free change sequence number for {version} after {MAX_CLAIMS} tries")
