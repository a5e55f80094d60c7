"""The names the gateway and the index service share on the wire, so the gateway needs no `ann_index` import.

- `CategorySpec`: the `category` of a query: a name, a list of names ("any of these") or None (all items).
- `partition_of`: which partition of a partitioned index holds an item (the gateway routes by it, the
  builder and the change applier place items by it).
- `thumbnail_media_type`: the content type of an item thumbnail the index serves, from its magic number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from imgcore.png_header import SIGNATURE as PNG_SIGNATURE

CategorySpec = str | Sequence[str] | None


def thumbnail_media_type(data: bytes) -> str:
    """image/webp, image/jpeg or image/png from the magic number; ValueError for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    raise ValueError("a thumbnail must be a WebP, JPEG or PNG image")


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
