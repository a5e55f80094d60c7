"""Category-set queries: any of several categories, merged by score, checked against exact search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ann_index.serving.category_sets import category_key, merge_by_score, query_rows
from ann_index.serving.reader import Hit, IndexReader
from imgcore.errors import InvalidInput, NotFound
from tests.ann_index.fakes import clustered, items_for, make_version


@pytest.fixture(scope="module")
def three_cats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vectors, labels = clustered(600, 16, clusters=6, spread=0.6, seed=3)
    path = tmp_path_factory.mktemp("sets") / "v"
    make_version(path, vectors, items_for(labels, categories=3), n_trees=20)
    return path


def _exact(reader: IndexReader, vec: np.ndarray, allowed: set[str], k: int) -> list[str]:
    """Brute force over the stored vectors: the true top k within the allowed categories."""
    ids = [f"item-{i:04d}" for i in range(reader.count)]
    scores = np.array([reader.vector_of(i) @ vec for i in ids])
    keep = [i for i in np.argsort(-scores) if reader.item(ids[i]).category in allowed]
    return [ids[i] for i in keep[:k]]


def test_a_set_returns_only_its_categories_in_score_order_like_exact_search(three_cats: Path) -> None:
    rng = np.random.default_rng(7)
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    with IndexReader.open(three_cats, embedder_sha256=None, dim=16) as reader:
        results = query_rows(reader, queries, 10, [["cat0", "cat2"]] * 5)
        for vec, hits in zip(queries, results, strict=True):
            assert {h.category for h in hits} <= {"cat0", "cat2"}
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            exact = _exact(reader, vec, {"cat0", "cat2"}, 10)
            assert len(set(exact) & {h.item_id for h in hits}) >= 9  # annoy, tuned for recall
        assert {h.category for hits in results for h in hits} == {"cat0", "cat2"}  # the merge takes from both


def test_rows_mix_single_categories_sets_and_all(three_cats: Path) -> None:
    queries = np.eye(16, dtype=np.float32)[:4]
    with IndexReader.open(three_cats, embedder_sha256=None, dim=16) as reader:
        specs: list[str | list[str] | None] = ["cat1", ["cat1"], None, ["cat0", "cat1", "cat2"]]
        got = query_rows(reader, queries, 5, specs)
        assert {h.category for h in got[0]} == {"cat1"}
        assert [h.item_id for h in got[1]] == [h.item_id for h in reader.query(queries[1:2], 5, "cat1")[0]]
        assert [h.item_id for h in got[2]] == [h.item_id for h in reader.query(queries[2:3], 5)[0]]
        every = reader.query(queries[3:4], 5)[0]
        assert [h.score for h in got[3]] == pytest.approx([h.score for h in every], abs=0.02)


def test_set_keys_resolve_slugs_drop_duplicates_and_refuse_bad_sets(three_cats: Path) -> None:
    with IndexReader.open(three_cats, embedder_sha256=None, dim=16) as reader:
        assert category_key(reader, ["cat2", "cat0", "cat2"]) == ("cat0", "cat2")
        assert category_key(reader, "cat1") == ("cat1",)
        assert category_key(reader, None) is None
        with pytest.raises(InvalidInput):
            category_key(reader, [])
        with pytest.raises(NotFound):
            category_key(reader, ["cat0", "Hats"])


def test_merge_keeps_each_item_once_at_its_best_score() -> None:
    def hit(item: str, score: float) -> Hit:
        return Hit(item, score, "c", item, "file:///x", {})

    merged = merge_by_score([[hit("a", 0.9), hit("b", 0.5)], [hit("c", 0.7), hit("a", 0.6)]], k=3)
    assert [(h.item_id, h.score) for h in merged] == [("a", 0.9), ("c", 0.7), ("b", 0.5)]
    assert [h.item_id for h in merge_by_score([[hit("a", 0.9)], [hit("c", 0.7)]], k=1)] == ["a"]


def test_the_reader_itself_takes_a_category_list_as_a_set(three_cats: Path) -> None:
    """A view over the reader (the fresh index, #17) passes a set straight to `IndexReader.query`."""
    queries = np.eye(16, dtype=np.float32)[:3]
    with IndexReader.open(three_cats, embedder_sha256=None, dim=16) as reader:
        direct = reader.query(queries, 7, ["cat2", "cat0"])
        via_rows = query_rows(reader, queries, 7, [["cat0", "cat2"]] * 3)
        assert [[h.item_id for h in row] for row in direct] == [[h.item_id for h in row] for row in via_rows]
        assert all({h.category for h in row} <= {"cat0", "cat2"} and len(row) == 7 for row in direct)
