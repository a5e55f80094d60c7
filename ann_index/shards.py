"""Sharded rebuilds: which catalog rows a shard embeds, shard files, and the verified merge.

A Kubernetes Indexed Job runs `count` pods; pod `i` (env JOB_COMPLETION_INDEX) embeds only the rows of
shard `i` and writes `<out>/shards/<run>/<i>.npz`. A final step merges every shard of the run in a
deterministic order and refuses an incomplete or inconsistent set before any index is built.

Pure functions over plain values and a minimal store protocol (`put_bytes`, `get_bytes`, `list`), so the
same code runs against file://, s3:// or an in-memory fake. Assignment modes:
- "hash": shard = sha256(item_id) mod count. Stable across runs and catalog reorderings; independent of
  Python's randomised `hash()`; a row's shard never depends on the other rows.
- "range": contiguous, balanced blocks of row positions (`line_range`); needs the row count up front but
  keeps each shard's rows in catalog order.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

SHARD_DIR = "shards"
FORMAT_VERSION = 1
JOB_INDEX_ENV = "JOB_COMPLETION_INDEX"
MAX_SHARDS = 10_000
ShardMode = Literal["hash", "range"]
MODES: tuple[ShardMode, ...] = ("hash", "range")
_RUN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHARD_FILE_RE = re.compile(r"^(\d+)\.npz$")

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


def run_id(catalog_sha256: str, embedder_sha256: str, count: int, mode: ShardMode = "hash") -> str:
    """Content-addressed run id: `<mode><count>-<16 hex>` from the catalog bytes' and embedder's sha256.

    The embed pods and the merge step compute it independently and agree without coordination; a rerun
    over the same inputs finds (and may skip) the shards already written; a catalog changed between
    embedding and merging yields another id, so the merge finds no shards and refuses.
    """
    if mode not in MODES:
        raise ShardError(f"unknown shard mode {mode!r}; expected one of {MODES}")
    for name, value in (("catalog_sha256", catalog_sha256), ("embedder_sha256", embedder_sha256)):
        if not re.fullmatch(r"[0-9a-f]{64}", value or ""):
            raise ShardError(f"{name} must be 64 lowercase hex digits, got {value!r}")
    ShardSpec(0, count)
    digest = hashlib.sha256(f"{catalog_sha256}:{embedder_sha256}:{count}:{mode}".encode()).hexdigest()
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


@dataclass(frozen=True)
class Shard:
    """The content of one shard file."""

    run: str
    spec: ShardSpec
    mode: ShardMode
    ids: tuple[str, ...]
    vectors: np.ndarray  # float32 [len(ids), dim]
    skipped: tuple[str, ...]  # rows of this shard that could not be embedded (bad image...)
    embedder_sha256: str | None

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


def _check_members(ids: Sequence[str], skipped: Sequence[str], spec: ShardSpec, mode: ShardMode) -> None:
    seen: set[str] = set()
    for item_id in (*ids, *skipped):
        if not isinstance(item_id, str) or not item_id:
            raise ShardError(f"item ids must be non-empty strings, got {item_id!r}")
        if item_id in seen:
            raise ShardError(f"item id {item_id!r} appears twice in shard {spec}")
        seen.add(item_id)
        if mode == "hash" and shard_of(item_id, spec.count) != spec.index:
            raise ShardError(
                f"item id {item_id!r} belongs to shard {shard_of(item_id, spec.count)}/{spec.count}, "
                f"not {spec}"
            )


def encode_shard(shard: Shard) -> bytes:
    """Serialise to .npz bytes (no pickled objects: ids are unicode arrays, the header is JSON)."""
    header = {
        "format": FORMAT_VERSION,
        "run": shard.run,
        "index": shard.spec.index,
        "count": shard.spec.count,
        "mode": shard.mode,
        "rows": len(shard.ids),
        "dim": shard.dim,
        "embedder_sha256": shard.embedder_sha256,
    }
    buf = io.BytesIO()
    np.savez(
        buf,
        header=np.array(json.dumps(header, sort_keys=True)),
        ids=np.array(shard.ids, dtype=np.str_),
        skipped=np.array(shard.skipped, dtype=np.str_),
        vectors=shard.vectors,
    )
    return buf.getvalue()


def decode_shard(data: bytes) -> Shard:
    """Parse and check one shard file; raise ShardError on anything unexpected."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(str(npz["header"]))
            ids = tuple(str(x) for x in npz["ids"].tolist())
            skipped = tuple(str(x) for x in npz["skipped"].tolist())
            vectors = np.array(npz["vectors"])
    except ShardError:
        raise
    except Exception as exc:  # a truncated or foreign file: zip, KeyError, JSON errors
        raise ShardError(f"not a readable shard file: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise ShardError(f"unsupported shard format: {header!r}")
    mode = header.get("mode")
    if mode not in MODES:
        raise ShardError(f"shard file has unknown mode {mode!r}")
    spec = ShardSpec(int(header["index"]), int(header["count"]))
    vectors = _as_vectors(vectors, len(ids))
    if header.get("rows") != len(ids):
        raise ShardError(f"shard {spec}: header says {header.get('rows')} rows, file has {len(ids)}")
    _check_members(ids, skipped, spec, mode)
    return Shard(
        run=check_run(str(header["run"])),
        spec=spec,
        mode=mode,
        ids=ids,
        vectors=vectors,
        skipped=skipped,
        embedder_sha256=header.get("embedder_sha256"),
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
    mode: ShardMode = "hash",
) -> str:
    """Validate and write one shard to `shards/<run>/<index>.npz`; return the key.

    `ids` and `vectors` are the embedded rows (same order); `skipped` the rows of this shard that were
    given up on, so that the merge can still prove every catalog row was seen exactly once. An empty
    shard is valid (vectors of shape [0, dim] or [0, 0]). Writing again replaces the file (retries).
    """
    if mode not in MODES:
        raise ShardError(f"unknown shard mode {mode!r}; expected one of {MODES}")
    ids_t = tuple(ids)
    skipped_t = tuple(skipped)
    arr = _as_vectors(vectors, len(ids_t))
    _check_members(ids_t, skipped_t, spec, mode)
    shard = Shard(check_run(run), spec, mode, ids_t, arr, skipped_t, embedder_sha256)
    key = shard_key(run, spec.index)
    store.put_bytes(key, encode_shard(shard))
    return key


def shard_is_done(
    store: ShardStore, run: str, spec: ShardSpec, *, embedder_sha256: str | None = None
) -> bool:
    """True if a valid file for exactly this shard of this run exists (a retried pod may skip the work)."""
    if spec.index not in shard_indices(store, run):
        return False
    try:
        shard = decode_shard(store.get_bytes(shard_key(run, spec.index)))
    except ShardError:
        return False
    if embedder_sha256 is not None and shard.embedder_sha256 != embedder_sha256:
        return False
    return shard.run == run and shard.spec == spec


@dataclass(frozen=True)
class MergedShards:
    """All shards of one run, merged: input for the index builder."""

    run: str
    count: int
    ids: list[str]
    vectors: np.ndarray  # float32 [len(ids), dim]
    skipped: list[str]
    embedder_sha256: str | None

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def shard_indices(store: ShardStore, run: str) -> list[int]:
    """Shard indices present for a run (sorted); unrelated files under the run folder are an error."""
    prefix = f"{SHARD_DIR}/{check_run(run)}/"
    found: list[int] = []
    for key in store.list(prefix):
        name = key[len(prefix):] if key.startswith(prefix) else key.rsplit("/", 1)[-1]
        match = _SHARD_FILE_RE.match(name)
        if not match:
            raise ShardError(f"unexpected object in shard folder: {prefix}{name}")
        found.append(int(match.group(1)))
    return sorted(found)


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
    )
