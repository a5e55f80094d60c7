"""Quality gate: annoy recall@k against exact search on held-out catalog vectors, with search_k tuning, and
self-match@1 of catalog images embedded as a search embeds them (ann_index.build.self_match).

Each sampled item is used as a query with itself left out of both the exact and the approximate
answer (leave-one-out), so the index under test is the one that will be published, not a copy built
without the held-out items. Recall is tie-tolerant: an approximate neighbour counts when its true
similarity reaches the k-th exact similarity, so duplicate images cannot make a perfect index fail.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from annoy import AnnoyIndex

from ann_index.build.self_match import DEFAULT_MIN_SELF_MATCH, Probes, SelfMatch, measure
from ann_index.files import GLOBAL_INDEX_NAME, METRIC
from ann_index.items import CategoryInfo
from imgcore.retrieval import Row, by_category, query_metrics

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
    self_match_at_1: float | None = None  # None: not measured (no embedder at hand, e.g. a shard merge)
    self_match: dict[str, Any] | None = None  # queries, own_cosine_min, misses (named)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Truth:
    queries: np.ndarray  # aids
    kth_global: np.ndarray  # k-th best exact similarity, self excluded
    kth_cat: np.ndarray  # same within the query's category (-inf where the category is too small)
    cat_of: np.ndarray  # category position per query
    ranges: list[tuple[int, int]]  # annoy ids [lo, hi) per category position
    cat_of_aid: np.ndarray  # category position per annoy id


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
    return _Truth(queries, kth_g, kth_c, cat_index[queries], ranges, cat_index)


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
    make_forest: Callable[[_Truth], _Forest] | None = None,
    probes: tuple[Probes, np.ndarray] | None = None,
    min_self_match: float = DEFAULT_MIN_SELF_MATCH,
) -> GateResult:
    """Measure the built indexes in `index_dir`; tune search_k by doubling from k * n_trees.

    `make_forest` replaces the indexes of `index_dir` by another forest that answers alike (the partitioned
    gate's, which merges N partitions' answers). `probes`: catalog items embedded as a search embeds them, with
    the build's order (annoy id -> input position); their self-match@1 at the tuned search_k must reach
    `min_self_match`.

    `vecs` are the normalised vectors in annoy-id order. The search_k budget defaults to a quarter
    of the catalog (an index that must scan more is no better than exact search), but at least
    2,000 candidates, which cost microseconds, so small catalogs are not refused for being small.
    """
    n = vecs.shape[0]
    cats = list(categories.items())
    ranges = [(c.offset, c.offset + c.count) for _, c in cats]
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n, size=min(n_queries, n), replace=False)) if n > 1 else np.zeros(0, np.int64)
    budget = max(k * n_trees, max_search_k if max_search_k is not None else max(n // 4, min(n, 2000)))
    files = [c.file for _, c in cats]
    forest_of = make_forest or (lambda truth: _Forest(index_dir, vecs, files, truth, k))
    with forest_of(_exact_truth(vecs, queries, k, ranges)) as forest:
        search_k, recall, cat_recall, tried = forest.tune(k * n_trees, budget, recall_target, workers)
        matched = measure(*probes, vecs, lambda q: forest.first(q, search_k)) if probes is not None else None
    gate = GateResult(  # passed, k, target, recall, category recall, queries, trees, search_k, steps tried
        True, k, recall_target, round(recall, 4), round(cat_recall, 4), len(queries), n_trees, search_k, tried
    )
    _category_quality(gate, forest, [name for name, _ in cats])
    if recall < recall_target:
        gate.reasons.append(
            f"recall@{k} {recall:.3f} < target {recall_target} even at search_k={search_k} "
            f"(budget {budget}); build with more trees"
        )
    if cat_recall < recall_target:
        gate.reasons.append(f"per-category recall@{k} {cat_recall:.3f} < target {recall_target}")
    if min_category_precision is not None and (gate.category_p_at_10 or 0.0) < min_category_precision:
        gate.reasons.append(f"category P@{k} {gate.category_p_at_10} < required {min_category_precision}")
    _self_match(gate, matched, min_self_match)
    gate.passed = not gate.reasons
    return gate


def _self_match(gate: GateResult, matched: SelfMatch | None, min_self_match: float) -> None:
    if matched is None:
        return
    gate.self_match_at_1, gate.self_match = matched.rate, asdict(matched)
    if matched.rate < min_self_match:
        missed = ", ".join(f"{m['item_id']} (first: {m['first']})" for m in matched.misses[:5])
        gate.reasons.append(
            f"self-match@1 {matched.rate} < {min_self_match}: {matched.missed} of {matched.queries} catalog "
            f"images searched as a photo is did not come back first ({missed}, ...)"
        )


# One measured query: (approximate neighbours in the global index, their recall, the per-category recall).
_Measured = tuple[list[int], float, float]


class _Forest:
    """The global and per-category annoy indexes of a build, measured query by query against the truth."""

    def __init__(self, index_dir: Path, vecs: np.ndarray, files: list[str], truth: _Truth, k: int) -> None:
        self.vecs, self.truth, self.k = vecs, truth, k
        self.global_index = self._load(index_dir / GLOBAL_INDEX_NAME)
        self.cat_indexes = [self._load(index_dir / name) for name in files]
        self.results: list[_Measured] = []

    def _load(self, path: Path) -> AnnoyIndex:
        index = AnnoyIndex(self.vecs.shape[1], METRIC)
        index.load(str(path))
        return index

    def neighbours(self, aid: int, search_k: int, ci: int | None) -> list[int]:
        """The approximate top-k of item `aid` (itself left out), in the global index or category `ci`'s."""
        if ci is None:
            return [r for r in self.global_index.get_nns_by_item(aid, self.k + 1, search_k) if r != aid][: self.k]
        lo = self.truth.ranges[ci][0]
        nns = self.cat_indexes[ci].get_nns_by_item(aid - lo, self.k + 1, search_k)
        return [r + lo for r in nns if r + lo != aid][: self.k]

    def first(self, vec: np.ndarray, search_k: int) -> int | None:
        """The served top-1 annoy id of a query vector."""
        nns = self.global_index.get_nns_by_vector(vec.tolist(), 1, search_k)
        return int(nns[0]) if nns else None

    def one(self, pos: int, search_k: int) -> _Measured:
        k, vecs, truth = self.k, self.vecs, self.truth
        aid = int(truth.queries[pos])
        found = self.neighbours(aid, search_k, None)
        g = float(np.sum(vecs[found] @ vecs[aid] >= truth.kth_global[pos] - _TIE_EPS)) / min(k, len(vecs) - 1)
        ci = int(truth.cat_of[pos])
        lo, hi = truth.ranges[ci]
        kc = min(k, hi - lo - 1)
        if kc <= 0:
            return found, g, 1.0
        local = self.neighbours(aid, search_k, ci)
        return found, g, float(np.sum(vecs[local] @ vecs[aid] >= truth.kth_cat[pos] - _TIE_EPS)) / kc

    def tune(
        self, search_k: int, budget: int, recall_target: float, workers: int
    ) -> tuple[int, float, float, list[dict[str, float]]]:
        """Measure every query at `search_k`, doubling it until both recalls reach the target or the budget.

        Returns the final search_k, its recall and category recall, and every step tried; `results` holds
        the neighbours found at the final search_k.
        """
        tried: list[dict[str, float]] = []
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            while True:
                self.results = list(pool.map(lambda p, s=search_k: self.one(p, s), range(len(self.truth.queries))))
                recall = float(np.mean([r[1] for r in self.results])) if self.results else 1.0
                cat_recall = float(np.mean([r[2] for r in self.results])) if self.results else 1.0
                step = {"search_k": search_k, "recall": round(recall, 4), "category_recall": round(cat_recall, 4)}
                tried.append(step)
                if (recall >= recall_target and cat_recall >= recall_target) or search_k >= budget:
                    break
                search_k = min(search_k * 2, budget)
        return search_k, recall, cat_recall, tried

    def __enter__(self) -> _Forest:
        return self

    def __exit__(self, *exc: object) -> None:
        for index in [self.global_index, *self.cat_indexes]:
            index.unload()


def _category_quality(gate: GateResult, forest: _Forest, names: list[str]) -> None:
    """Category precision@k and R@1 of the served (approximate) neighbours; labels are categories."""
    if len(names) < 2 or not forest.results:
        return  # a single category makes precision trivially 1: not worth reporting
    cat_of_aid = forest.truth.cat_of_aid
    rows: dict[str, list[Row]] = {}
    for (found, _, _), ci in zip(forest.results, forest.truth.cat_of, strict=True):
        if found:  # precision over the neighbours returned: a tiny catalog has fewer than k
            hits = (cat_of_aid[found] == ci).tolist()
            rows.setdefault(names[ci], []).append(query_metrics(hits, gate.k, recall_at=(1,), out_of=len(found)))
    overall, gate.per_category = by_category(rows)
    gate.category_p_at_10 = overall[f"p_at_{gate.k}"]
    gate.category_r_at_1 = overall["r_at_1"]
