"""Quality gate: recall@10 against exact search, search_k tuning, and refusing weak indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ann_index.build.forest import BuildResult, build_index
from ann_index.build.gate import GateResult, run_gate
from tests.ann_index.fakes import clustered, items_for


def _build_and_gate(tmp_path: Path, vectors: np.ndarray, labels: np.ndarray, n_trees: int, **kw: object) -> GateResult:
    built: BuildResult = build_index(vectors, items_for(labels), tmp_path, n_trees=n_trees, seed=1)
    vecs = np.load(tmp_path / "vectors.npy")
    return run_gate(tmp_path, vecs, built.categories, n_trees=n_trees, n_queries=300, **kw)  # type: ignore[arg-type]


def test_gate_blocks_a_one_tree_index_on_hard_clustered_data(tmp_path: Path) -> None:
    vectors, labels = clustered(10_000, 64, clusters=20, spread=2.0)  # wide clusters: high intrinsic dim
    gate = _build_and_gate(tmp_path, vectors, labels, n_trees=1)
    assert not gate.passed
    assert gate.recall_at_10 < 0.95
    assert "recall@10" in gate.reasons[0] and "more trees" in gate.reasons[0]
    assert [t["search_k"] for t in gate.tried][:3] == [10, 20, 40]  # doubling from k * n_trees
    assert gate.search_k == 2_500  # stopped at the budget: a quarter of the catalog


def test_gate_blocks_tiny_search_k_budget(tmp_path: Path) -> None:
    vectors, labels = clustered(3_000, 32, clusters=10, spread=1.5)
    gate = _build_and_gate(tmp_path, vectors, labels, n_trees=1, max_search_k=10)
    assert not gate.passed and gate.search_k == 10 and len(gate.tried) == 1


def test_gate_tunes_search_k_upward_until_recall_target(tmp_path: Path) -> None:
    vectors, labels = clustered(3_000, 32, clusters=10, spread=1.5)
    gate = _build_and_gate(tmp_path, vectors, labels, n_trees=4)
    assert gate.passed, gate.reasons
    assert gate.search_k > 40 and gate.n_trees == 4
    assert gate.tried[0]["recall"] < 0.95 <= gate.tried[-1]["recall"] == gate.recall_at_10
    assert gate.category_recall_at_10 >= 0.95


def test_gate_reports_category_precision_and_r_at_1_for_labelled_items(tmp_path: Path) -> None:
    vectors, labels = clustered(2_000, 16, clusters=3, spread=0.2)  # category == cluster: easy
    gate = _build_and_gate(tmp_path, vectors, labels, n_trees=8)
    assert gate.passed
    assert gate.category_p_at_10 == 1.0 and gate.category_r_at_1 == 1.0
    assert set(gate.per_category) == {"cat0", "cat1", "cat2"}
    assert sum(int(v["queries"]) for v in gate.per_category.values()) == 300


def test_duplicate_vectors_do_not_fail_a_perfect_index(tmp_path: Path) -> None:
    base, labels = clustered(50, 8, clusters=5, spread=0.3)
    vectors = np.repeat(base, 20, axis=0)  # every vector 20 times: exact top-10 is all ties
    gate = _build_and_gate(tmp_path, vectors, np.repeat(labels, 20), n_trees=4, min_category_precision=0.9)
    assert gate.passed and gate.recall_at_10 == 1.0


def test_min_category_precision_fails_a_mixed_up_embedding(tmp_path: Path) -> None:
    vectors, _ = clustered(1_000, 16, clusters=5, spread=0.2)
    random_labels = np.random.default_rng(3).integers(0, 3, 1_000)  # categories unrelated to the vectors
    gate = _build_and_gate(tmp_path, vectors, random_labels, n_trees=8, min_category_precision=0.8)
    assert not gate.passed and any("category P@10" in r for r in gate.reasons)
