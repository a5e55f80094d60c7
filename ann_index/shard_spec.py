"""Sharded rebuilds, part 1: which catalog rows a shard embeds, and the run id that names a sharded run.

Assignment modes:
- "hash": shard = sha256(item_id) mod count. Stable across runs and catalog reorderings; independent of
  Python's randomised `hash()`; a row's shard never depends on the other rows.
- "range": contiguous, balanced blocks of row positions (`line_range`); needs the row count up front but
  keeps each shard's rows in catalog order.

Import from `ann_index.shards`, which re-exports this module, `shard_io` and `shard_merge`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

SHARD_DIR = "shards"
JOB_INDEX_ENV = "JOB_COMPLETION_INDEX"
MAX_SHARDS = 10_000
ShardMode = Literal["hash", "range"]
MODES: tuple[ShardMode, ...] = ("hash", "range")
_RUN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

T = TypeVar("T")


class ShardError(ValueError):
    """A shard spec, shard file or shard set that cannot be used."""


class ShardStore(Protocol):
    """The part of imgcore.storage.ObjectStore that sharding needs (keys relative to the store root)."""

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def list(self, prefix: str = "") -> list[str]: ...


@dataclass(frozen=True)
class ShardSpec:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (1 <= self.count <= MAX_SHARDS):
            raise ShardError(f"shard count must be in 1..{MAX_SHARDS}, got {self.count}")
        if not (0 <= self.index < self.count):
            raise ShardError(f"shard index must be in 0..{self.count - 1}, got {self.index}")

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """Parse "i/n" (the CLI form, e.g. `--shard 3/8`)."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ShardError(f"shard must look like INDEX/COUNT (e.g. 0/8), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def from_env(cls, count: int, env: Mapping[str, str] | None = None) -> ShardSpec:
        """Shard of this pod of an Indexed Job: index from JOB_COMPLETION_INDEX."""
        source = os.environ if env is None else env
        raw = source.get(JOB_INDEX_ENV)
        if raw is None or not raw.strip().isdigit():
            raise ShardError(f"{JOB_INDEX_ENV} is not set to a non-negative integer: {raw!r}")
        return cls(int(raw), count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def check_run(run: str) -> str:
    """A run id is one safe path segment (letters, digits, '.', '_', '-'; at most 128 chars)."""
    if not isinstance(run, str) or not _RUN_RE.match(run) or run in (".", ".."):
        raise ShardError(f"invalid run id {run!r}: use letters, digits, '.', '_' or '-' (max 128)")
    return run


def run_id(catalog_sha256: str, embedder_sha256: str, count: int, mode: ShardMode = "hash", *, salt: str = "") -> str:
    """Content-addressed run id: `<mode><count>-<16 hex>` from the catalog bytes' and embedder's sha256.

    The embed pods and the merge step compute it independently and agree without coordination; a rerun
    over the same inputs finds (and may skip) the shards already written; a catalog changed between
    embedding and merging yields another id, so the merge finds no shards and refuses. `salt` names
    any other setting that changes the vectors (e.g. "crop=foreground"); empty leaves the id as before.
    """
    if mode not in MODES:
        raise ShardError(f"unknown shard mode {mode!r}; expected one of {MODES}")
    for name, value in (("catalog_sha256", catalog_sha256), ("embedder_sha256", embedder_sha256)):
        if not re.fullmatch(r"[0-9a-f]{64}", value or ""):
            raise ShardError(f"{name} must be 64 lowercase hex digits, got {value!r}")
    ShardSpec(0, count)
    material = f"{catalog_sha256}:{embedder_sha256}:{count}:{mode}" + (f":{salt}" if salt else "")
    digest = hashlib.sha256(material.encode()).hexdigest()
    return f"{mode}{count}-{digest[:16]}"


def shard_of(key: str, count: int) -> int:
    """Stable shard of a row key (the catalog's item_id) in "hash" mode."""
    if count < 1:
        raise ShardError(f"shard count must be >= 1, got {count}")
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def line_range(total: int, index: int, count: int) -> tuple[int, int]:
    """[start, stop) of shard `index` when `total` rows are cut into `count` balanced contiguous blocks.

    Sizes differ by at most one; blocks are in order and cover 0..total exactly once.
    """
    spec = ShardSpec(index, count)
    if total < 0:
        raise ShardError(f"row count must be >= 0, got {total}")
    return total * spec.index // spec.count, total * (spec.index + 1) // spec.count


def _default_key(row: Any) -> str:
    if isinstance(row, str):
        return row
    if isinstance(row, Mapping):
        return str(row["item_id"])
    return str(row.item_id)


def select_rows(
    rows: Iterable[T],
    spec: ShardSpec,
    *,
    mode: ShardMode = "hash",
    key: Callable[[T], str] | None = None,
) -> list[T]:
    """The rows shard `spec` must embed, in their catalog order.

    `key` gives a row's id (default: `row.item_id`, `row["item_id"]`, or the row itself if a str).
    Every row belongs to exactly one shard for a given count, in both modes.
    """
    if mode not in MODES:
        raise ShardError(f"unknown shard mode {mode!r}; expected one of {MODES}")
    get_key = key or _default_key
    if mode == "hash":
        return [row for row in rows if shard_of(get_key(row), spec.count) == spec.index]
    items = list(rows)
    start, stop = line_range(len(items), spec.index, spec.count)
    return items[start:stop]


def shard_key(run: str, index: int) -> str:
    """Key of a shard file relative to the rebuild's output root: `shards/<run>/<index>.npz`."""
    if index < 0:
        raise ShardError(f"shard index must be >= 0, got {index}")
    return f"{SHARD_DIR}/{check_run(run)}/{index}.npz"
