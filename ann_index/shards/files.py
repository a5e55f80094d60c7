"""Sharded rebuilds, part 2: shard files (`shards/<run>/<index>.npz`): encode, decode, write, find.

A shard file holds the embedded ids, their float32 vectors and thumbnails (ann_index.thumbs), the ids given
up on (with the reasons), the embedder's sha256 and a JSON header; no pickled objects, so a foreign file
cannot run code on load.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ann_index.shards.spec import MODE, SHARD_DIR, ShardError, ShardSpec, ShardStore, check_run, shard_key, shard_of
from ann_index.thumbs import ThumbPack

FORMAT_VERSION = 1
_SHARD_FILE_RE = re.compile(r"^(\d+)\.npz$")


@dataclass(frozen=True)
class Shard:
    """The content of one shard file."""

    run: str
    spec: ShardSpec
    ids: tuple[str, ...]
    vectors: np.ndarray  # float32 [len(ids), dim]
    skipped: tuple[str, ...]  # rows of this shard that could not be embedded (bad image...)
    embedder_sha256: str | None
    skip_reasons: tuple[str, ...] = ()  # one per skipped id, or empty when not recorded
    thumbs: ThumbPack | None = None  # one per id; None in files written before thumbnails

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def _as_vectors(vectors: Any, n: int) -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise ShardError(f"vectors must be 2-D [n, dim], got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ShardError(f"{n} ids but {arr.shape[0]} vectors")
    if n and arr.shape[1] < 1:
        raise ShardError("vectors have dimension 0")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ShardError(f"vectors must be floating point, got {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ShardError("vectors contain NaN or infinity")
    return out


def _check_members(ids: Sequence[str], skipped: Sequence[str], spec: ShardSpec) -> None:
    seen: set[str] = set()
    for item_id in (*ids, *skipped):
        if not isinstance(item_id, str) or not item_id:
            raise ShardError(f"item ids must be non-empty strings, got {item_id!r}")
        if item_id in seen:
            raise ShardError(f"item id {item_id!r} appears twice in shard {spec}")
        seen.add(item_id)
        if shard_of(item_id, spec.count) != spec.index:
            raise ShardError(
                f"item id {item_id!r} belongs to shard {shard_of(item_id, spec.count)}/{spec.count}, not {spec}"
            )


def _check_reasons(reasons: Sequence[str], skipped: Sequence[str]) -> tuple[str, ...]:
    out = tuple(str(r) for r in reasons)
    if out and len(out) != len(skipped):
        raise ShardError(f"{len(skipped)} skipped ids but {len(out)} skip reasons")
    return out


def _check_thumbs(thumbs: ThumbPack | None, n: int) -> ThumbPack | None:
    if thumbs is not None and len(thumbs) != n:
        raise ShardError(f"{n} ids but {len(thumbs)} thumbnails")
    return thumbs


def _thumb_members(thumbs: ThumbPack | None) -> dict[str, np.ndarray]:
    if thumbs is None:
        return {}
    blob, lengths = thumbs.arrays()
    return {"thumbs": blob, "thumb_lengths": lengths}


def _decode_thumbs(npz: Any) -> ThumbPack | None:
    """Optional members: files written before thumbnails lack them."""
    if "thumbs" not in npz.files:
        return None
    try:
        return ThumbPack(npz["thumbs"].astype(np.uint8).tobytes(), [int(n) for n in npz["thumb_lengths"]])
    except ValueError as exc:
        raise ShardError(f"shard thumbnails: {exc}") from exc


def encode_shard(shard: Shard) -> bytes:
    """Serialise to .npz bytes (no pickled objects: ids are unicode arrays, the header is JSON)."""
    header = {
        "format": FORMAT_VERSION,
        "run": shard.run,
        "index": shard.spec.index,
        "count": shard.spec.count,
        "mode": MODE,
        "rows": len(shard.ids),
        "dim": shard.dim,
        "embedder_sha256": shard.embedder_sha256,
    }
    members: dict[str, Any] = {
        "header": np.array(json.dumps(header, sort_keys=True)),
        "ids": np.array(shard.ids, dtype=np.str_),
        "skipped": np.array(shard.skipped, dtype=np.str_),
        "skip_reasons": np.array(shard.skip_reasons, dtype=np.str_),
        "vectors": shard.vectors,
        **_thumb_members(shard.thumbs),
    }
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def decode_shard(data: bytes) -> Shard:
    """Parse and check one shard file; raise ShardError on anything unexpected."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(str(npz["header"]))
            ids = tuple(str(x) for x in npz["ids"].tolist())
            skipped = tuple(str(x) for x in npz["skipped"].tolist())
            # Optional member: files written before reasons were recorded lack it.
            reasons = tuple(str(x) for x in npz["skip_reasons"].tolist()) if "skip_reasons" in npz.files else ()
            vectors = np.array(npz["vectors"])
            thumbs = _decode_thumbs(npz)
    except ShardError:
        raise
    except Exception as exc:  # a truncated or foreign file: zip, KeyError, JSON errors
        raise ShardError(f"not a readable shard file: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise ShardError(f"unsupported shard format: {header!r}")
    if header.get("mode") != MODE:
        raise ShardError(f"shard file has unknown mode {header.get('mode')!r}")
    spec = ShardSpec(int(header["index"]), int(header["count"]))
    vectors = _as_vectors(vectors, len(ids))
    if header.get("rows") != len(ids):
        raise ShardError(f"shard {spec}: header says {header.get('rows')} rows, file has {len(ids)}")
    _check_members(ids, skipped, spec)
    return Shard(
        run=check_run(str(header["run"])),
        spec=spec,
        ids=ids,
        vectors=vectors,
        skipped=skipped,
        embedder_sha256=header.get("embedder_sha256"),
        skip_reasons=_check_reasons(reasons, skipped),
        thumbs=_check_thumbs(thumbs, len(ids)),
    )


def write_shard(
    store: ShardStore,
    run: str,
    spec: ShardSpec,
    ids: Sequence[str],
    vectors: Any,
    *,
    skipped: Sequence[str] = (),
    embedder_sha256: str | None = None,
    skip_reasons: Sequence[str] = (),
    thumbs: ThumbPack | None = None,
) -> str:
    """Validate and write one shard to `shards/<run>/<index>.npz`; return the key.

    `ids` and `vectors` are the embedded rows (same order); `skipped` the rows of this shard that were
    given up on (`skip_reasons`: why, one per skipped id, optional), so that the merge can still prove
    every catalog row was seen exactly once; `thumbs` one thumbnail per id. An empty shard is valid
    (vectors of shape [0, dim] or [0, 0]). Writing again replaces the file (retries).
    """
    ids_t = tuple(ids)
    skipped_t = tuple(skipped)
    arr = _as_vectors(vectors, len(ids_t))
    _check_members(ids_t, skipped_t, spec)
    reasons = _check_reasons(skip_reasons, skipped_t)
    thumbs = _check_thumbs(thumbs, len(ids_t))
    shard = Shard(check_run(run), spec, ids_t, arr, skipped_t, embedder_sha256, reasons, thumbs)
    key = shard_key(run, spec.index)
    store.put_bytes(key, encode_shard(shard))
    return key


def shard_indices(store: ShardStore, run: str) -> list[int]:
    """Shard indices present for a run (sorted); unrelated files under the run folder are an error."""
    prefix = f"{SHARD_DIR}/{check_run(run)}/"
    found: list[int] = []
    for key in store.list(prefix):
        name = key[len(prefix) :] if key.startswith(prefix) else key.rsplit("/", 1)[-1]
        match = _SHARD_FILE_RE.match(name)
        if not match:
            raise ShardError(f"unexpected object in shard folder: {prefix}{name}")
        found.append(int(match.group(1)))
    return sorted(found)


def shard_is_done(
    store: ShardStore, run: str, spec: ShardSpec, *, embedder_sha256: str | None = None, need_thumbs: bool = False
) -> bool:
    """True if a valid file for exactly this shard of this run exists (a retried pod may skip the work);
    with `need_thumbs`, one written before thumbnails is not (it is embedded again)."""
    if spec.index not in shard_indices(store, run):
        return False
    try:
        shard = decode_shard(store.get_bytes(shard_key(run, spec.index)))
    except ShardError:
        return False
    if embedder_sha256 is not None and shard.embedder_sha256 != embedder_sha256:
        return False
    if need_thumbs and shard.thumbs is None:
        return False
    return shard.run == run and shard.spec == spec
