"""The fresh index: items upserted since the served version was built, searched exactly, plus the ids whose
entries in the built (annoy) index must no longer show (deleted or replaced).

Exact search is a matrix product over every fresh vector; bench/freshness.py measures what it costs at
10 k and 100 k items. Applying happens on one thread (the change poller) while queries run on others: a
query works on a snapshot (arrays only ever grow; rows under the snapshot's length are never rewritten,
only marked dead in a mask the snapshot copies), so it never waits for an apply beyond a short lock.
Changes carry the time of their first write; an item keeps the newest one, so a batch carried over to a
newer version twice, or late, never brings an older state back. Only ids the built version holds are hidden;
a delete of an id held nowhere keeps just its time (for a late, older upsert of it), at most
`MAX_TOMBSTONES` of them: a million deletes of unknown ids kept ~540 MB per replica for ever.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ann_index.serving.hits import PLAIN, Hit, QueryOptions
from ann_index.version.changes import ChangeBatch, Delete, Upsert
from imgcore.index_wire import product_key
from imgcore.vectors import l2_normalise

CategoryFilter = str | Iterable[str] | None
_COMPACT_MIN = 4096  # dead rows tolerated before compacting at all
MAX_TOMBSTONES = 100_000  # deletes of ids held nowhere whose time is kept; past it they are no-ops


@dataclass(frozen=True)
class _Snapshot:
    vectors: np.ndarray  # [n, dim]
    alive: np.ndarray  # bool [n]
    codes: np.ndarray  # int32 [n] category codes
    items: list[Upsert]
    cat_codes: dict[str, int]


class FreshIndex:
    """In-memory exact index of upserted items plus the hidden ids; `accept` picks the upserts this replica
    holds by their product key (a partition's own products); `in_base` says whether the built version holds an
    id (None: assume it does), so only those are hidden."""

    def __init__(
        self, dim: int, accept: Callable[[str], bool] | None = None, in_base: Callable[[str], bool] | None = None
    ) -> None:
        self.dim = dim
        self.accept = accept
        self.in_base = in_base
        self.tombstones = 0  # deletes of ids held nowhere, their time kept
        self.ignored_deletes = 0  # the same past MAX_TOMBSTONES: nothing kept
        self.applied_seq = 0
        self.origins: set[str] = set()
        self._lock = threading.Lock()
        self._vectors = np.zeros((16, dim), np.float32)
        self._alive = np.zeros(16, bool)
        self._codes = np.zeros(16, np.int32)
        self._items: list[Upsert] = []
        self._slot: dict[str, int] = {}
        self._stamp: dict[str, float] = {}
        self._cat_codes: dict[str, int] = {}
        self._hidden: frozenset[str] = frozenset()
        self._dead = 0

    @property
    def size(self) -> int:
        """Fresh items searchable now."""
        return len(self._slot)

    @property
    def hidden(self) -> frozenset[str]:
        """Ids whose entries in the built index are hidden (deleted or replaced by a fresh item)."""
        return self._hidden

    def apply(self, batch: ChangeBatch) -> bool:
        """Apply one batch (in sequence order); False when its origin was applied already (a carried copy)."""
        with self._lock:
            self.applied_seq = max(self.applied_seq, batch.seq)
            if batch.origin in self.origins:
                return False
            self.origins.add(batch.origin)
            hidden = set(self._hidden)
            for row in batch.rows:
                if self._stamp.get(row.item_id, float("-inf")) > batch.written_at:
                    continue  # a newer change of this item is already applied
                in_base = self.in_base is None or self.in_base(row.item_id)
                if isinstance(row, Delete) and not in_base and row.item_id not in self._slot:
                    self._tombstone(row.item_id, batch.written_at)
                    continue
                self._stamp[row.item_id] = batch.written_at
                if in_base:
                    hidden.add(row.item_id)
                self._drop(row.item_id)
                if isinstance(row, Upsert) and (
                    self.accept is None or self.accept(product_key(row.item_id, row.attrs))
                ):
                    self._append(row)
            self._hidden = frozenset(hidden)  # swapped whole: readers never see a set mid-update
            if self._dead > _COMPACT_MIN and self._dead > len(self._items) // 2:
                self._compact()
            return True

    def _tombstone(self, item_id: str, written_at: float) -> None:
        if item_id not in self._stamp:
            if self.tombstones >= MAX_TOMBSTONES:
                self.ignored_deletes += 1
                return
            self.tombstones += 1
        self._stamp[item_id] = written_at

    def _drop(self, item_id: str) -> None:
        slot = self._slot.pop(item_id, None)
        if slot is not None:
            self._alive[slot] = False
            self._dead += 1

    def _append(self, row: Upsert | Delete) -> None:
        assert isinstance(row, Upsert)
        n = len(self._items)
        if n == len(self._alive):
            # New arrays: a snapshot taken before keeps the old ones, whose rows nobody rewrites.
            self._vectors = np.concatenate([self._vectors, np.zeros_like(self._vectors)])
            self._alive = np.concatenate([self._alive, np.zeros_like(self._alive)])
            self._codes = np.concatenate([self._codes, np.zeros_like(self._codes)])
        self._vectors[n] = l2_normalise(row.vector[None, :])[0]
        self._alive[n] = True
        self._codes[n] = self._cat_codes.setdefault(row.category, len(self._cat_codes))
        self._items.append(row)
        self._slot[row.item_id] = n

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive[: len(self._items)])
        size = max(16, 2 * len(keep))
        vectors, alive, codes = np.zeros((size, self.dim), np.float32), np.zeros(size, bool), np.zeros(size, np.int32)
        vectors[: len(keep)], alive[: len(keep)], codes[: len(keep)] = self._vectors[keep], True, self._codes[keep]
        self._vectors, self._alive, self._codes = vectors, alive, codes
        self._items = [self._items[i] for i in keep]
        self._slot = {item.item_id: i for i, item in enumerate(self._items)}
        self._dead = 0

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            n = len(self._items)
            return _Snapshot(
                self._vectors[:n], self._alive[:n].copy(), self._codes[:n], self._items, dict(self._cat_codes)
            )

    def get(self, item_id: str) -> Upsert | None:
        with self._lock:
            slot = self._slot.get(item_id)
            return self._items[slot] if slot is not None else None

    @property
    def categories(self) -> dict[str, int]:
        """Fresh items per category."""
        with self._lock:
            counts: dict[str, int] = {}
            for slot in self._slot.values():
                name = self._items[slot].category
                counts[name] = counts.get(name, 0) + 1
            return counts

    @property
    def filter_keys(self) -> frozenset[str]:
        """The attrs keys fresh items carry (a filter may name them)."""
        with self._lock:
            return frozenset(key for slot in self._slot.values() for key in self._items[slot].attrs)

    def query(
        self, vectors: np.ndarray, k: int, category: CategoryFilter = None, options: QueryOptions = PLAIN
    ) -> list[list[Hit]]:
        """Exact top-k fresh items per (normalised) query row, best first, within `category` (a name or a set),
        passing `options.where`, one per product with `options.group`."""
        snap = self._snapshot()
        out: list[list[Hit]] = [[] for _ in range(len(vectors))]
        mask = snap.alive
        if category is not None:
            names = [category] if isinstance(category, str) else list(category)
            wanted = [snap.cat_codes[name] for name in names if name in snap.cat_codes]
            mask = mask & np.isin(snap.codes, wanted)
        if options.where is not None:
            where = options.where
            mask = mask & np.array([where.matches({**it.attrs, "category": it.category}) for it in snap.items], bool)
        live = int(mask.sum())
        if live == 0 or k < 1:
            return out
        # Over every row, dead ones included: a product over a view costs less than gathering the live rows.
        # einsum, not BLAS: one core per query like annoy; a threaded BLAS under concurrent queries (or a CPU
        # limit) oversubscribes the cores and was 20x slower than this on a busy 2-core machine.
        scores = np.einsum("nd,md->mn", snap.vectors, l2_normalise(np.asarray(vectors, np.float32)))  # [m, n]
        scores[:, ~mask] = -np.inf
        take = min(k, live)
        for q, row_scores in enumerate(scores):
            if options.group:  # a product may have several fresh images: rank them all, keep its best
                top = np.flatnonzero(mask)
            else:
                top = np.argpartition(-row_scores, take - 1)[:take] if take < len(row_scores) else np.arange(take)
            top = top[np.argsort(-row_scores[top], kind="stable")]
            out[q] = _distinct([_hit(snap.items[int(i)], float(row_scores[i])) for i in top], k, options.group)
        return out


def _distinct(hits: list[Hit], k: int, group: bool) -> list[Hit]:
    seen: set[str] = set()
    out = []
    for hit in hits:
        if hit.key(group) not in seen:
            seen.add(hit.key(group))
            out.append(hit)
    return out[:k]


def _hit(item: Upsert, score: float) -> Hit:
    attrs = dict(item.attrs)
    return Hit(
        item.item_id, min(1.0, score), item.category, item.title, item.image, attrs, product_key(item.item_id, attrs)
    )
