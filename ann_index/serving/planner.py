"""The query planner (issue 28): how a filtered or grouped query is searched so that recall does not depend on
how many items the filter lets through.

The filter is evaluated to an exact mask over the scope's annoy ids first (`columns.py`), so the planner knows
how many items match, then:

- none match: an empty answer;
- few match (at most `exact_limit`): exact search over just those vectors (a gather and a matrix product,
  cheaper than annoy's own search at that size, and exact);
- otherwise annoy over the scope (the per-category index when the query pins one category) asked for the
  candidates that, at this selectivity, hold the k best matching ones (search_k grown by 1/selectivity), then
  post-filtered; asked again, deeper, while fewer than k distinct products came back, and exact over the
  matching items once the depth would reach them all.

Grouping ("one hit per product") walks the ranked list and keeps each product's best image; hidden items
(deleted or replaced by fresh changes) are skipped before grouping, so a product's next image stands in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from annoy import AnnoyIndex

from ann_index.files import angular_to_cosine
from ann_index.serving.columns import Columns
from ann_index.serving.hits import Hit, QueryOptions

GATE_K = 10  # the k that the manifest's search_k was tuned for
EXACT_PER_SEARCH_K = 2  # exact search is cheaper than annoy up to about this many matches per unit of search_k
EXACT_MIN = 4096  # and always at this size
DEPTH_EXPONENT = 1.0  # search_k grows as (depth / GATE_K) ** this: bench/filters.py keeps recall >= 0.95 with it
MARGIN = 2  # the k-th match's rank varies around k / selectivity: search this much deeper than the mean
RowsOf = Callable[[list[int]], dict[int, tuple[str, str, str, str, str]]]


@dataclass(frozen=True)
class Scope:
    """What one query searches: an annoy index over the global ids [offset, offset + size), and the version."""

    index: AnnoyIndex
    offset: int
    size: int
    search_k: int
    n_trees: int
    vectors: np.ndarray  # the version's normalised vectors, global order
    columns: Columns
    rows: RowsOf

    @property
    def exact_limit(self) -> int:
        return max(EXACT_MIN, EXACT_PER_SEARCH_K * self.search_k)


def search(scope: Scope, queries: np.ndarray, k: int, options: QueryOptions) -> list[list[Hit]]:
    """Top-k per (normalised) query row: distinct products (or images), best first, passing the filter."""
    mask = None
    matching = scope.size
    if options.where is not None:
        mask = scope.columns.mask(options.where)[scope.offset : scope.offset + scope.size]
        matching = int(mask.sum())
    if matching == 0:
        return [[] for _ in queries]
    if mask is not None and matching <= scope.exact_limit:
        aids = np.flatnonzero(mask) + scope.offset
        return [_exact(scope, aids, q, k, options) for q in queries]
    return [_annoy(scope, q, k, options, mask, matching) for q in queries]


def _exact(scope: Scope, aids: np.ndarray, query: np.ndarray, k: int, options: QueryOptions) -> list[Hit]:
    scores = scope.vectors[aids] @ query
    take = min(len(aids), 4 * k)
    while True:
        top = np.argpartition(-scores, take - 1)[:take] if take < len(aids) else np.arange(len(aids))
        top = top[np.argsort(-scores[top], kind="stable")]
        hits = _collect(scope, aids[top].tolist(), scores[top].tolist(), k, options)
        if len(hits) >= k or take >= len(aids):
            return hits
        take = min(len(aids), take * 4)


def _annoy(
    scope: Scope, query: np.ndarray, k: int, options: QueryOptions, mask: np.ndarray | None, matching: int
) -> list[Hit]:
    selectivity = matching / scope.size
    margin = MARGIN if mask is not None else 1  # unfiltered, the gate's search_k is tuned for this depth
    want = min(scope.size, math.ceil(margin * k / selectivity))  # past the unfiltered rank of the k-th match
    while True:
        # annoy ranks every candidate it visits, so a deeper answer at one search_k costs little beyond it.
        search_k = max(scope.search_k, int(scope.search_k * (want / GATE_K) ** DEPTH_EXPONENT))
        fetch = min(scope.size, 2 * want)
        ids, dists = scope.index.get_nns_by_vector(query.tolist(), fetch, search_k=search_k, include_distances=True)
        aids, scores = np.asarray(ids, np.int64), np.asarray([angular_to_cosine(d) for d in dists])
        if mask is not None and len(aids):
            keep = mask[aids]
            aids, scores = aids[keep], scores[keep]
        hits = _collect(scope, (aids + scope.offset).tolist(), scores.tolist(), k, options)
        if len(hits) >= k or len(ids) < fetch:
            return hits
        want *= 4
        if mask is not None and want * scope.n_trees >= 2 * matching:  # deeper than exact over the matches costs
            return _exact(scope, np.flatnonzero(mask) + scope.offset, query, k, options)


def _collect(scope: Scope, aids: list[int], scores: list[float], k: int, options: QueryOptions) -> list[Hit]:
    """The first k distinct products (or images) of a ranked list of global ids, hidden items skipped; rows are
    read only for the k chosen."""
    cols = scope.columns
    chosen: list[tuple[int, float]] = []
    seen: set[int] = set()
    for aid, score in zip(aids, scores, strict=True):
        item = int(cols.item[aid])
        if options.hidden and cols.item_names[item] in options.hidden:
            continue
        key = int(cols.product[aid]) if options.group else item
        if key not in seen:
            seen.add(key)
            chosen.append((aid, score))
            if len(chosen) == k:
                break
    rows = scope.rows([aid for aid, _ in chosen])
    hits = []
    for aid, score in chosen:
        row, code = rows[aid], int(cols.product[aid])
        attrs = json.loads(row[4])
        product, images = cols.product_names[code], int(cols.images[code])
        hits.append(Hit(row[0], min(1.0, float(score)), row[1], row[2], row[3], attrs, product, images))
    return hits
