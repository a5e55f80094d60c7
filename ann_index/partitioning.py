"""Which partition of a partitioned index holds an item: a stable hash of its id, the same in every process."""

from __future__ import annotations

import hashlib


def partition_of(item_id: str, partitions: int) -> int:
    """Partition index in [0, partitions) for `item_id`.

    blake2b rather than Python's `hash()`: the builder, every index replica, the change applier and the gateway
    must agree across processes and releases, and `hash()` of a str is salted per process.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if partitions == 1:
        return 0
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions
