"""The names the gateway and the index service share on the wire, so the gateway needs no `ann_index` import.

- `CategorySpec`: the `category` of a query: a name, a list of names ("any of these") or None (all items).
- `partition_of`: which partition of a partitioned index holds an item (the gateway routes by it, the
  builder and the change applier place items by it).
- `thumbnail_media_type`: the content type of an item thumbnail the index serves, from its magic number.
- `wire_json`: the one serializer of every JSON answer, so what a catalog row may hold is checked with it.
- `check_item_id`, `check_category`: the lengths a catalog allows an id and a category, so a route refuses a
  longer one (400) before it is looked up, logged or echoed in an error.
- `product_key`: the product an item's image belongs to (issue 28): answers hold one hit per product, and a
  product's images live in one partition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from imgcore.errors import InvalidInput
from imgcore.png_header import SIGNATURE as PNG_SIGNATURE

CategorySpec = str | Sequence[str] | None
MAX_ITEM_ID_LENGTH = 256
MAX_CATEGORY_LENGTH = 200
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def wire_json(content: Any) -> bytes:
    """JSON bytes the way every service answers (orjson: numpy arrays natively; TypeError, a
    `orjson.JSONEncodeError`, for an integer past 64 bits, a lone surrogate or nesting past 254 levels)."""
    return orjson.dumps(content, option=_JSON_OPTIONS)


def check_item_id(item_id: str) -> str:
    """`item_id`, or 400 when no catalog could hold it (longer than `MAX_ITEM_ID_LENGTH`)."""
    if len(item_id) > MAX_ITEM_ID_LENGTH:
        raise InvalidInput(f"item_id is longer than {MAX_ITEM_ID_LENGTH} characters", reason="bad_item_id")
    return item_id


def check_category(spec: CategorySpec) -> CategorySpec:
    """`spec`, or 400 when a name in it is longer than any catalog allows (`MAX_CATEGORY_LENGTH`)."""
    names = [spec] if isinstance(spec, str) else list(spec or ())
    if any(isinstance(name, str) and len(name) > MAX_CATEGORY_LENGTH for name in names):
        raise InvalidInput(f"category is longer than {MAX_CATEGORY_LENGTH} characters", reason="bad_category")
    return spec


PRODUCT_ATTRS = ("product_id", "group_id")  # the attrs keys that name a row's product, first found wins
GROUP_PRODUCT = "product"  # `group` of a query: one hit per product (the default)
GROUP_NONE = "none"  # one hit per image, as before issue 28
GROUPS = (GROUP_PRODUCT, GROUP_NONE)


def product_key(item_id: str, attrs: Mapping[str, Any] | None) -> str:
    """The product of a catalog row: `attrs.product_id` (or `group_id`), else the row is a product of its own."""
    for key in PRODUCT_ATTRS:
        value = (attrs or {}).get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return item_id


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
    """Partition index in [0, partitions) for `item_id` (the builder and the change applier pass the row's
    `product_key`, so a product's images share a partition).

    blake2b rather than Python's `hash()`: the builder, every index replica, the change applier and the gateway
    must agree across processes and releases, and `hash()` of a str is salted per process.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if partitions == 1:
        return 0
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions
