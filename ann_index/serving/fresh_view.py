"""What the index service answers from: the built version's reader with the fresh index laid over it.

Every route goes through here, so a deleted or replaced item is gone from all of them (global and category
queries, similar-by-id, item look-up, item image), and fresh items join the answers merged by score.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ann_index.items import IndexItem
from ann_index.serving.category_sets import merge_by_score
from ann_index.serving.filters import Filter, bad_filter
from ann_index.serving.fresh import CategoryFilter, FreshIndex
from ann_index.serving.hits import PLAIN, QueryOptions
from ann_index.serving.reader import IndexReader
from imgcore.errors import NotFound
from imgcore.vectors import l2_normalise


def _as_given(category: CategoryFilter) -> Any:
    """The category filter passed on to the reader as the caller gave it (a name, or a set: issue 15)."""
    return category


def _gone(item_id: str, version: str) -> NotFound:
    return NotFound(f"item {item_id!r} was deleted from index {version}", reason="unknown_item")


class FreshView:
    """The reader's interface (the part the service uses), answering with the fresh changes applied."""

    def __init__(self, reader: IndexReader, fresh: FreshIndex) -> None:
        self.reader = reader
        self.fresh = fresh
        # What a version never changes, as the reader has it.
        self.version: str = reader.version
        self.count: int = reader.count
        self.dim: int = reader.dim
        self.manifest: dict[str, Any] = reader.manifest

    @property
    def changes(self) -> int:
        """The last change sequence number applied to this version."""
        return self.fresh.applied_seq

    @property
    def categories(self) -> dict[str, int]:
        return self.reader.categories

    def resolve_category(self, category: str) -> str:
        return self.reader.resolve_category(category)

    def check_filter(self, where: Filter | None) -> None:
        """InvalidInput (400) when the filter names a key no item of this version (or a fresh one) has."""
        if where is None:
            return
        unknown = sorted(where.keys - self.reader.filter_keys - self.fresh.filter_keys - {"category"})
        if unknown:
            raise bad_filter(f"unknown attribute {unknown[0]!r} (this index has no item with it)")

    def query(
        self, vectors: np.ndarray, k: int, category: CategoryFilter = None, options: QueryOptions = PLAIN
    ) -> list[list[Any]]:
        """Top-k per query row over the built index (hidden items dropped) and the fresh items, by score."""
        hidden = self.fresh.hidden
        if not hidden and self.fresh.size == 0:
            return self.reader.query(vectors, k, _as_given(category), options)
        base = self._base_query(vectors, k, category, dataclasses.replace(options, hidden=hidden))
        fresh_category = self._fresh_category(category)
        rows = l2_normalise(np.asarray(vectors, np.float32).reshape(len(base), -1))
        fresh = self.fresh.query(rows, k, fresh_category, options)
        return [merge_by_score([built, new], k, options.group) for built, new in zip(base, fresh, strict=True)]

    def _fresh_category(self, category: CategoryFilter) -> CategoryFilter:
        """A category as the built index names it (slugs resolved), so fresh items of it are found too."""
        if category is None:
            return None
        names = [category] if isinstance(category, str) else list(category)
        out = []
        for name in names:
            try:
                out.append(self.reader.resolve_category(name))
            except NotFound:
                out.append(name)  # a category only fresh items have
        return out

    def _base_query(self, vectors: np.ndarray, k: int, category: CategoryFilter, options: QueryOptions) -> list[Any]:
        """The built index's top-k without hidden items (the planner skips them and searches deeper)."""
        try:
            return self.reader.query(vectors, k, _as_given(category), options)
        except NotFound:
            if category is not None and self._fresh_knows(category):
                return [[] for _ in range(len(np.atleast_2d(vectors)))]
            raise

    def _fresh_knows(self, category: CategoryFilter) -> bool:
        names = [category] if isinstance(category, str) else list(category or [])
        return any(name in self.fresh.categories for name in names)

    def item(self, item_id: str) -> IndexItem:
        fresh = self.fresh.get(item_id)
        if fresh is not None:
            return IndexItem(fresh.item_id, fresh.category, fresh.title, fresh.image, dict(fresh.attrs))
        if item_id in self.fresh.hidden:
            raise _gone(item_id, self.version)
        return self.reader.item(item_id)

    def vector_of(self, item_id: str) -> np.ndarray:
        fresh = self.fresh.get(item_id)
        if fresh is not None:
            return np.array(fresh.vector, dtype=np.float32)
        if item_id in self.fresh.hidden:
            raise _gone(item_id, self.version)
        return self.reader.vector_of(item_id)

    def thumbnail(self, item_id: str) -> tuple[bytes, str]:
        fresh = self.fresh.get(item_id)
        if fresh is not None:
            if fresh.thumb is None:
                raise NotFound(f"item {item_id!r} has no thumbnail", reason="no_thumbnails")
            return fresh.thumb, fresh.media_type
        if item_id in self.fresh.hidden:
            raise _gone(item_id, self.version)
        return self.reader.thumbnail(item_id)
