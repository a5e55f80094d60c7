"""The quality gate of a partitioned version: recall of the *merged* answer against exact search over the whole
catalog, with one search_k for every partition (what the gateway's scatter-gather serves).

Each sampled item queries every partition's index by its vector (it is stored in one of them, and left out of
the answer there), the partitions' candidates are merged by score, and the top k are measured as the
single-index gate measures its answer: same truth, same tie tolerance, same search_k tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from annoy import AnnoyIndex

from ann_index.build.gate import GateResult, _Forest, _Measured, _Truth, run_gate
from ann_index.files import GLOBAL_INDEX_NAME, METRIC
from ann_index.items import CategoryInfo


@dataclass(frozen=True)
class GatePart:
    """One built partition as the gate sees it."""

    path: Path
    categories: dict[str, CategoryInfo]  # this partition's own ranges and files
    global_of: np.ndarray  # global annoy id (whole-catalog order) of each of its annoy ids


class _PartForest(_Forest):
    """The partitions' indexes, answering each query as the gateway merges them."""

    def __init__(self, parts: list[GatePart], names: list[str], vecs: np.ndarray, truth: _Truth, k: int) -> None:
        self.vecs, self.truth, self.k, self.parts, self.names = vecs, truth, k, parts, names
        self.globals = [self._load(p.path / GLOBAL_INDEX_NAME) for p in parts]
        self.cats = [{name: self._load(p.path / c.file) for name, c in p.categories.items()} for p in parts]
        self.results: list[_Measured] = []

    def neighbours(self, aid: int, search_k: int, ci: int | None) -> list[int]:
        """Every partition's top-k of item `aid`'s vector, merged by true similarity (itself left out)."""
        vec = self.vecs[aid]
        category = None if ci is None else self.names[ci]
        found: list[int] = []
        for part, whole, cats in zip(self.parts, self.globals, self.cats, strict=True):
            index = whole if category is None else cats.get(category)
            if index is None:  # no item of this category landed in this partition
                continue
            offset = 0 if category is None else part.categories[category].offset
            ids = np.asarray(index.get_nns_by_vector(vec.tolist(), self.k + 1, search_k), dtype=np.int64)
            found += [int(g) for g in part.global_of[ids + offset] if g != aid]
        found.sort(key=lambda g: -float(self.vecs[g] @ vec))
        return found[: self.k]

    def first(self, vec: np.ndarray, search_k: int) -> int | None:
        """Every partition's top-1 of a query vector, the best of them by true similarity (global annoy id)."""
        tops = [int(part.global_of[ids[0]]) for part, index in zip(self.parts, self.globals, strict=True)
                if (ids := index.get_nns_by_vector(vec.tolist(), 1, search_k))]  # fmt: skip
        return max(tops, key=lambda g: float(self.vecs[g] @ vec)) if tops else None

    def _load(self, path: Path) -> AnnoyIndex:
        index = AnnoyIndex(self.vecs.shape[1], METRIC)
        index.load(str(path))
        return index

    def __exit__(self, *exc: object) -> None:
        for index in [*self.globals, *(i for cats in self.cats for i in cats.values())]:
            index.unload()


def run_partition_gate(
    parts: list[GatePart], vecs: np.ndarray, categories: dict[str, CategoryInfo], **options: Any
) -> GateResult:
    """Gate the merged answer; `vecs` are the whole catalog's normalised vectors in global order (by category),
    `categories` the whole catalog's ranges in that order; `options` as `run_gate`'s (n_trees, k, ...)."""
    names, k = list(categories), int(options.get("k", 10))
    forest = lambda truth: _PartForest(parts, names, vecs, truth, k)  # noqa: E731
    return run_gate(parts[0].path, vecs, categories, make_forest=forest, **options)
