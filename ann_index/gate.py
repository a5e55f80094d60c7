"""Quality gate: annoy recall@k against exact search on held-out catalog vectors, with search_k tuning.

Each sampled item is used as a query with itself left out of both the exact and the approximate
answer (leave-one-out), so the index under test is the one that will be published, not a copy built
without the held-out items. Recall is tie-tolerant: an approximate neighbour counts when its true
similarity reaches the k-th exact similarity, so duplicate images cannot make a perfect index fail.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from annoy import AnnoyIndex

from ann_index.builder import CategoryInfo
from ann_index.common import GLOBAL_INDEX_NAME, METRIC

DEFAULT_RECALL_TARGET = 0.95
_TIE_EPS = 1e-5


@dataclass
class GateResult:
    passed: bool
    k: int
    recall_target: float
    recall_at_10: float  # named for the manifest; measured at `k`
    category_recall_at_10: float  # same, querying the per-category indexes
    n_queries: int
    n_trees: int
    search_k: int
    tried: list[dict[str, float]] = field(default_factory=list)
    category_p_at_10: float | None = None
    category_r_at_1: float | None = None
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Truth:
    queries: np.ndarray  # aids
    kth_global: np.ndarray  # k-th best exact similarity, self excluded
    kth_cat: np.ndarray  # same within the query's category (-inf where the category is too small)
    cat_of: np.ndarray  # category position per query


def _exact_truth(vecs: np.ndarray, queries: np.ndarray, k: int, ranges: list[tuple[int, int]]) -> _Truth:
    cat_index = np.zeros(len(vecs), dtype=np.int64)
    for pos, (lo, hi) in enumerate(ranges):
        cat_index[lo:hi] = pos
    kth_g = np.empty(len(queries), dtype=np.float32)
    kth_c = np.full(len(queries), -np.inf, dtype=np.float32)
    for start in range(0, len(queries), 256):  # chunks keep the similarity matrix small
        q = queries[start : start + 256]
        sims = vecs[q] @ vecs.T
        sims[np.arange(len(q)), q] = -np.inf
        kk = min(k, vecs.shape[0] - 1)
        kth_g[start : start + len(q)] = -np.partition(-sims, kk - 1, axis=1)[:, kk - 1]
        for row, aid in enumerate(q):
            lo, hi = ranges[cat_index[aid]]
            kc = min(k, hi - lo - 1)
            if kc > 0:
                kth_c[start + row] = -np.partition(-sims[row, lo:hi], kc - 1)[kc - 1]
    return _Truth(queries, kth_g, kth_c, cat_index[queries])


def run_gate(
    index_dir: Path,
    vecs: np.ndarray,
    categories: dict[str, CategoryInfo],
    *,
    n_trees: int,
    k: int = 10,
    recall_target: float = DEFAULT_RECALL_TARGET,
    n_queries: int = 1000,
    max_search_k: int | None = None,
    min_category_precision: float | None = None,
    seed: int = 0,
    workers: int = 1,
) -> GateResult:
    """Measure the built indexes in `index_dir`; tune search_k by doubling from k * n_trees.

    `vecs` are the normalised vectors in annoy-id order. The search_k budget defaults to a quarter
    of the catalog (an index that must scan more is no better than exact search), but at least
    2,000 candidates, which cost microseconds, so small catalogs are not refused for being small.
    """
    n, dim = vecs.shape
    cats = list(categories.items())
    ranges = [(c.offset, c.offset + c.count) for _, c in cats]
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n, size=min(n_queries, n), replace=False)) if n > 1 else np.zeros(0, np.int64)
    truth = _exact_truth(vecs, queries, k, ranges)

    def load(name: str) -> AnnoyIndex:
        index = AnnoyIndex(dim, METRIC)
        index.load(str(index_dir / name))
        return index

    global_index = load(GLOBAL_INDEX_NAME)
    cat_indexes = [load(c.file) for _, c in cats]

    def one(pos: int, search_k: int) -> tuple[list[int], float, float]:
        aid = int(truth.queries[pos])
        found = [r for r in global_index.get_nns_by_item(aid, k + 1, search_k) if r != aid][:k]
        kk = min(k, n - 1)
        g = float(np.sum(vecs[found] @ vecs[aid] >= truth.kth_global[pos] - _TIE_EPS)) / kk
        ci = int(truth.cat_of[pos])
        lo, hi = ranges[ci]
        kc = min(k, hi - lo - 1)
        if kc <= 0:
            return found, g, 1.0
        local = [r + lo for r in cat_indexes[ci].get_nns_by_item(aid - lo, k + 1, search_k) if r + lo != aid]
        c = float(np.sum(vecs[local[:k]] @ vecs[aid] >= truth.kth_cat[pos] - _TIE_EPS)) / kc
        return found, g, c

    budget = max(k * n_trees, max_search_k if max_search_k is not None else max(n // 4, min(n, 2000)))
    search_k = k * n_trees
    tried: list[dict[str, float]] = []
    results: list[tuple[list[int], float, float]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        while True:
            results = list(pool.map(lambda p, s=search_k: one(p, s), range(len(queries))))
            recall = float(np.mean([r[1] for r in results])) if results else 1.0
            cat_recall = float(np.mean([r[2] for r in results])) if results else 1.0
            tried.append({"search_k": search_k, "recall": round(recall, 4), "category_recall": round(cat_recall, 4)})
            if (recall >= recall_target and cat_recall >= recall_target) or search_k >= budget:
                break
            search_k = min(search_k * 2, budget)
    for index in [global_index, *cat_indexes]:
        index.unload()

    gate = GateResult(
        passed=True,
        k=k,
        recall_target=recall_target,
        recall_at_10=round(recall, 4),
        category_recall_at_10=round(cat_recall, 4),
        n_queries=len(queries),
        n_trees=n_trees,
        search_k=search_k,
        tried=tried,
    )
    _category_quality(gate, results, truth, cats, ranges)
    if recall < recall_target:
        gate.reasons.append(
            f"recall@{k} {recall:.3f} < target {recall_target} even at search_k={search_k} "
            f"(budget {budget}); build with more trees"
        )
    if cat_recall < recall_target:
        gate.reasons.append(f"per-category recall@{k} {cat_recall:.3f} < target {recall_target}")
    if min_category_precision is not None and (gate.category_p_at_10 or 0.0) < min_category_precision:
        gate.reasons.append(f"category P@{k} {gate.category_p_at_10} < required {min_category_precision}")
    gate.passed = not gate.reasons
    return gate


def _category_quality(
    gate: GateResult,
    results: list[tuple[list[int], float, float]],
    truth: _Truth,
    cats: list[tuple[str, CategoryInfo]],
    ranges: list[tuple[int, int]],
) -> None:
    """Category precision@k and R@1 of the served (approximate) neighbours; labels are categories."""
    if len(cats) < 2 or not results:
        return  # a single category makes precision trivially 1: not worth reporting
    cat_of_aid = np.zeros(ranges[-1][1], dtype=np.int64)
    for pos, (lo, hi) in enumerate(ranges):
        cat_of_aid[lo:hi] = pos
    per: dict[int, list[tuple[float, float]]] = {}
    for (found, _, _), ci in zip(results, truth.cat_of, strict=True):
        if not found:
            continue
        same = cat_of_aid[found] == ci
        per.setdefault(int(ci), []).append((float(np.mean(same)), float(same[0])))
    all_rows = [row for rows in per.values() for row in rows]
    gate.category_p_at_10 = round(float(np.mean([r[0] for r in all_rows])), 4)
    gate.category_r_at_1 = round(float(np.mean([r[1] for r in all_rows])), 4)
    gate.per_category = {
        cats[ci][0]: {
            "queries": len(rows),
            "p_at_10": round(float(np.mean([r[0] for r in rows])), 4),
            "r_at_1": round(float(np.mean([r[1] for r in rows])), 4),
        }
        for ci, rows in sorted(per.items())
    }
