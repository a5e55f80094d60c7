"""Sharded rebuilds: which catalog rows a shard embeds, and the run id that names a sharded run.

A Kubernetes Indexed Job runs `count` pods; pod `i` (`--shard $(JOB_COMPLETION_INDEX)/count`) embeds
only the rows of shard `i` and writes `<out>/shards/<run>/<i>.npz` (`shard_io`); a final step merges
every shard of the run in a deterministic order and refuses an incomplete or inconsistent set
(`shard_merge`) before the index is built (`shard_job` runs both steps for `imgsearch index build
--shard i/N | --merge-shards N`).

A row's shard is sha256(item_id) mod count: stable across runs and catalog reorderings, independent of
Python's randomised `hash()`, and never dependent on the other rows. Shard files and run ids still name
this assignment ("hash"), so files written by earlier releases keep their names and stay readable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from imgcore.storage_base import is_safe_name

SHARD_DIR = "shards"
MAX_SHARDS = 10_000
MODE: Final = "hash"  # the assignment, as recorded in shard files and run ids


class ShardError(ValueError):
    """A shard spec, shard file or shard set that cannot be used."""


class ShardStore(Protocol):
    """The part of imgcore.storage.ObjectStore that sharding needs (keys relative to the store root)."""

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def list(self, prefix: str = "") -> list[str]: ...


class HasItemId(Protocol):
    @property
    def item_id(self) -> str: ...


Row = TypeVar("Row", bound=HasItemId)


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

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def check_run(run: str) -> str:
    """A run id is one safe path segment (letters, digits, '.', '_', '-'; at most 128 chars)."""
    if not is_safe_name(run):
        raise ShardError(f"invalid run id {run!r}: use letters, digits, '.', '_' or '-' (max 128)")
    return run


def run_id(catalog_sha256: str, embedder_sha256: str, count: int, *, salt: str = "") -> str:
    """Content-addressed run id: `hash<count>-<16 hex>` from the catalog bytes' and embedder's sha256.

    The embed pods and the merge step compute it independently and agree without coordination; a rerun
    over the same inputs finds (and may skip) the shards already written; a catalog changed between
    embedding and merging yields another id, so the merge finds no shards and refuses. `salt` names
    any other setting that changes the vectors (e.g. "crop=foreground"); empty leaves the id as before.
    """
    for name, value in (("catalog_sha256", catalog_sha256), ("embedder_sha256", embedder_sha256)):
        if not re.fullmatch(r"[0-9a-f]{64}", value or ""):
            raise ShardError(f"{name} must be 64 lowercase hex digits, got {value!r}")
    ShardSpec(0, count)
    material = f"{catalog_sha256}:{embedder_sha256}:{count}:{MODE}" + (f":{salt}" if salt else "")
    digest = hashlib.sha256(material.encode()).hexdigest()
    return f"{MODE}{count}-{digest[:16]}"


def shard_of(key: str, count: int) -> int:
    """The shard of a row key (the catalog's item_id)."""
    if count < 1:
        raise ShardError(f"shard count must be >= 1, got {count}")
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_rows(rows: Iterable[Row], spec: ShardSpec) -> list[Row]:
    """The rows shard `spec` must embed, in their catalog order; each row is in exactly one shard."""
    return [row for row in rows if shard_of(row.item_id, spec.count) == spec.index]


def shard_key(run: str, index: int) -> str:
    """Key of a shard file relative to the rebuild's output root: `shards/<run>/<index>.npz`."""
    if index < 0:
        raise ShardError(f"shard index must be >= 0, got {index}")
    return f"{SHARD_DIR}/{check_run(run)}/{index}.npz"
