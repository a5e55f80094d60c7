"""Sharded rebuilds, part 3: the verified merge of every shard of a run, in a deterministic order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ann_index.shards.files import Shard, decode_shard, shard_indices
from ann_index.shards.spec import ShardError, ShardSpec, ShardStore, shard_key
from ann_index.thumbs import ThumbPack


@dataclass(frozen=True)
class MergedShards:
    """All shards of one run, merged: input for the index builder."""

    run: str
    count: int
    ids: list[str]
    vectors: np.ndarray  # float32 [len(ids), dim]
    skipped: list[str]
    embedder_sha256: str | None
    skip_reasons: dict[str, str] = field(default_factory=dict)  # skipped id -> why, where recorded
    thumbs: ThumbPack | None = None  # one per id, same order; None when a shard file has none (older files)


def merge_shards(
    store: ShardStore,
    run: str,
    count: int,
    *,
    expected_ids: Sequence[str] | None = None,
    embedder_sha256: str | None = None,
) -> MergedShards:
    """Load shards 0..count-1 of `run`, verify the set, and merge them deterministically.

    Refused (ShardError): a missing shard, a shard index >= count, a shard from another run or count,
    mixed dimensions or embedders, an id in the wrong shard (so in two); with `expected_ids`
    (every catalog item_id), any id not accounted for (embedded or skipped) or extra. `embedder_sha256`,
    when given, must match every shard's.

    Order (of ids, vectors and thumbnails): with `expected_ids`, the catalog order (so a sharded build
    equals an unsharded one); otherwise shard 0's rows, then shard 1's, ... each in the order it was written.
    """
    shards = _load_shards(store, run, count)
    shard_embedder = _common_embedder(shards, run, embedder_sha256)
    dims = {s.dim for s in shards if s.ids}
    if len(dims) > 1:
        raise ShardError(f"run {run!r}: shards have different dimensions {sorted(dims)}")
    seen = _check_places(shards, run, count)
    ids = [item_id for s in shards for item_id in s.ids]
    skipped = [item_id for s in shards for item_id in s.skipped]
    parts = [s.vectors for s in shards if s.ids]
    vectors = np.concatenate(parts, axis=0) if parts else np.zeros((0, dims.pop() if dims else 0), np.float32)
    order: list[int] | None = None
    if expected_ids is not None:
        order, skipped = _catalog_order(run, list(expected_ids), seen, ids, skipped)
        ids, vectors = [ids[n] for n in order], vectors[order] if order else vectors
    packs = [s.thumbs for s in shards if s.thumbs is not None]
    thumbs = ThumbPack.gather(packs, order) if len(packs) == len(shards) else None
    return MergedShards(
        run=run,
        count=count,
        ids=ids,
        vectors=np.ascontiguousarray(vectors, dtype=np.float32),
        skipped=skipped,
        embedder_sha256=shard_embedder,
        skip_reasons={x: why for s in shards for x, why in zip(s.skipped, s.skip_reasons, strict=False) if why},
        thumbs=thumbs,
    )


def _load_shards(store: ShardStore, run: str, count: int) -> list[Shard]:
    """Every shard 0..count-1 of `run`, and nothing else, decoded."""
    ShardSpec(0, count)  # validates count
    present = shard_indices(store, run)
    missing = sorted(set(range(count)) - set(present))
    extra = [i for i in present if i >= count]
    if missing or extra:
        raise ShardError(
            f"run {run!r}: shard set is not 0..{count - 1}: missing {missing[:20]}, unexpected {extra[:20]}"
        )
    return [decode_shard(store.get_bytes(shard_key(run, i))) for i in range(count)]


def _common_embedder(shards: list[Shard], run: str, expected: str | None) -> str | None:
    embedders = {s.embedder_sha256 for s in shards}
    if len(embedders) != 1:
        raise ShardError(f"run {run!r}: shards were embedded by different models: {sorted(map(str, embedders))}")
    found = embedders.pop()
    if expected is not None and found != expected:
        raise ShardError(f"run {run!r}: shards embedded by {found}, expected {expected}")
    return found


def _check_places(shards: list[Shard], run: str, count: int) -> set[str]:
    """Every id the shards account for; refuses a shard file in the wrong place.

    An id cannot be in two shards: decoding refused any id outside its own shard (`shard_of`).
    """
    for i, shard in enumerate(shards):
        if shard.run != run or shard.spec != ShardSpec(i, count):
            raise ShardError(
                f"{shard_key(run, i)} holds shard {shard.spec} of run {shard.run!r}, expected {i}/{count} of {run!r}"
            )
    return {item_id for shard in shards for item_id in (*shard.ids, *shard.skipped)}


def _catalog_order(
    run: str, expected: list[str], seen: set[str], ids: list[str], skipped: list[str]
) -> tuple[list[int], list[str]]:
    """Check that the shards hold exactly the catalog's ids; (positions of `ids` in catalog order, skipped
    in catalog order)."""
    expected_set = set(expected)
    if len(expected_set) != len(expected):
        raise ShardError("expected_ids contains duplicates")
    not_seen = [x for x in expected if x not in seen]
    unknown = sorted(seen - expected_set)
    if not_seen or unknown:
        raise ShardError(
            f"run {run!r}: {len(not_seen)} catalog rows in no shard (e.g. {not_seen[:5]}), "
            f"{len(unknown)} shard rows not in the catalog (e.g. {unknown[:5]})"
        )
    position = {item_id: n for n, item_id in enumerate(ids)}
    order = [position[x] for x in expected if x in position]
    skipped_set = set(skipped)
    return order, [x for x in expected if x in skipped_set]
