"""Sharded rebuilds, part 3: the verified merge of every shard of a run, in a deterministic order.

Import from `ann_index.shards`, which re-exports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ann_index.shard_io import decode_shard, shard_indices
from ann_index.shard_spec import ShardError, ShardSpec, ShardStore, shard_key


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

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


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
    mixed modes, dimensions or embedders, an id in two shards, an id in the wrong shard; with
    `expected_ids` (every catalog item_id), any id not accounted for (embedded or skipped) or extra.
    `embedder_sha256`, when given, must match every shard's.

    Order: with `expected_ids`, the catalog order (so a sharded build equals an unsharded one);
    otherwise shard 0's rows, then shard 1's, ... each in the order it was written.
    """
    spec0 = ShardSpec(0, count)  # validates count
    present = shard_indices(store, run)
    missing = sorted(set(range(spec0.count)) - set(present))
    extra = [i for i in present if i >= count]
    if missing or extra:
        raise ShardError(
            f"run {run!r}: shard set is not 0..{count - 1}: missing {missing[:20]}, unexpected {extra[:20]}"
        )
    shards = [decode_shard(store.get_bytes(shard_key(run, i))) for i in range(count)]
    modes = {s.mode for s in shards}
    if len(modes) != 1:
        raise ShardError(f"run {run!r}: shards mix modes {sorted(modes)}")
    embedders = {s.embedder_sha256 for s in shards}
    if len(embedders) != 1:
        raise ShardError(f"run {run!r}: shards were embedded by different models: {sorted(map(str, embedders))}")
    shard_embedder = embedders.pop()
    if embedder_sha256 is not None and shard_embedder != embedder_sha256:
        raise ShardError(f"run {run!r}: shards embedded by {shard_embedder}, expected {embedder_sha256}")
    dims = {s.dim for s in shards if s.ids}
    if len(dims) > 1:
        raise ShardError(f"run {run!r}: shards have different dimensions {sorted(dims)}")
    dim = dims.pop() if dims else 0
    owner: dict[str, int] = {}
    for i, shard in enumerate(shards):
        if shard.run != run or shard.spec != ShardSpec(i, count):
            raise ShardError(
                f"{shard_key(run, i)} holds shard {shard.spec} of run {shard.run!r}, expected {i}/{count} of {run!r}"
            )
        for item_id in (*shard.ids, *shard.skipped):
            if item_id in owner:
                raise ShardError(f"item id {item_id!r} is in shard {owner[item_id]} and shard {i}")
            owner[item_id] = i

    ids = [item_id for s in shards for item_id in s.ids]
    skipped = [item_id for s in shards for item_id in s.skipped]
    reasons = {x: why for s in shards for x, why in zip(s.skipped, s.skip_reasons, strict=False) if why}
    parts = [s.vectors for s in shards if s.ids]
    vectors = np.concatenate(parts, axis=0) if parts else np.zeros((0, dim), dtype=np.float32)

    if expected_ids is not None:
        expected = list(expected_ids)
        expected_set = set(expected)
        if len(expected_set) != len(expected):
            raise ShardError("expected_ids contains duplicates")
        not_seen = [x for x in expected if x not in owner]
        unknown = sorted(set(owner) - expected_set)
        if not_seen or unknown:
            raise ShardError(
                f"run {run!r}: {len(not_seen)} catalog rows in no shard (e.g. {not_seen[:5]}), "
                f"{len(unknown)} shard rows not in the catalog (e.g. {unknown[:5]})"
            )
        position = {item_id: n for n, item_id in enumerate(ids)}
        order = [position[x] for x in expected if x in position]
        ids = [ids[n] for n in order]
        vectors = vectors[order] if order else vectors
        skipped_set = set(skipped)
        skipped = [x for x in expected if x in skipped_set]
    return MergedShards(
        run=run,
        count=count,
        ids=ids,
        vectors=np.ascontiguousarray(vectors, dtype=np.float32),
        skipped=skipped,
        embedder_sha256=shard_embedder,
        skip_reasons=reasons,
    )
