"""Queries restricted to a *set* of categories: each category's own annoy index, merged by score.

On the wire (the index's `POST /v1/query`) a category is a name, a list of names ("any of these") or null
(all items). The per-category indexes are exact partitions of the catalog, so the best k of their k-best
lists is the best k of the union — no extra search depth is needed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from ann_index.serving.hits import PLAIN, QueryOptions
from imgcore.errors import InvalidInput
from imgcore.index_wire import CategorySpec

CategoryKey = tuple[str, ...] | None  # canonical names, sorted; None: every category


class Searchable(Protocol):
    """What a set query needs of the index: an `IndexReader`, or a view over one that adds fresh items."""

    def resolve_category(self, category: str) -> str: ...

    def query(
        self, vectors: np.ndarray, k: int, category: str | None = None, options: QueryOptions = PLAIN
    ) -> list[list[Any]]: ...


def category_key(reader: Searchable, spec: CategorySpec) -> CategoryKey:
    """The canonical set a spec names (slugs resolved, duplicates dropped); NotFound for an unknown name."""
    if spec is None:
        return None
    names = [spec] if isinstance(spec, str) else list(spec)
    if not names:
        raise InvalidInput("a category set must name at least one category", reason="bad_category")
    if not all(isinstance(name, str) for name in names):
        raise InvalidInput("a category set is a list of category names", reason="bad_category")
    return tuple(sorted({reader.resolve_category(name) for name in names}))


def merge_by_score(lists: Sequence[Sequence[Any]], k: int, group: bool = False) -> list[Any]:
    """The best k of several best-first hit lists (`Hit`s: item_id, score), one hit per item (per product with
    `group`: its best score), best first."""
    merged = sorted((hit for hits in lists for hit in hits), key=lambda hit: -hit.score)
    out: list[Any] = []
    seen: set[str] = set()
    for hit in merged:
        if hit.key(group) not in seen:
            seen.add(hit.key(group))
            out.append(hit)
            if len(out) == k:
                break
    return out


def query_set(
    reader: Searchable, vectors: np.ndarray, k: int, key: CategoryKey, options: QueryOptions = PLAIN
) -> list[list[Any]]:
    """Top-k per row within the categories of `key` (None: all)."""
    if key is None or len(key) == 1:
        return reader.query(vectors, k, None if key is None else key[0], options)
    per_category = [reader.query(vectors, k, name, options) for name in key]
    return [merge_by_score([lists[row] for lists in per_category], k, options.group) for row in range(len(vectors))]


def query_rows(
    reader: Searchable,
    vectors: np.ndarray,
    k: int,
    specs: Sequence[CategorySpec],
    options: QueryOptions = PLAIN,
) -> list[list[Any]]:
    """Top-k per row, each row within its own category spec; rows sharing a set are queried together."""
    rows_by_key: dict[CategoryKey, list[int]] = defaultdict(list)
    for row, spec in enumerate(specs):
        rows_by_key[category_key(reader, spec)].append(row)
    results: list[list[Any]] = [[] for _ in specs]
    for key, rows in rows_by_key.items():
        for row, hits in zip(rows, query_set(reader, vectors[rows], k, key, options), strict=True):
            results[row] = hits
    return results
