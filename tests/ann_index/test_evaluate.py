"""Evaluation metrics (hand-checked), query loading and in-process evaluation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.evaluate import Query, evaluate_in_process, format_report, load_queries, score
from ann_index.serving.reader import IndexReader
from tests.ann_index.fakes import FakeEmbedder


def test_recall_and_precision_are_computed_per_category() -> None:
    queries = [Query("q1", "Bag"), Query("q2", "Bag"), Query("q3", "T-shirt/top"), Query("q4", "Bag")]
    results = [
        [(c, f"x{i}") for i, c in enumerate(cats)] if cats is not None else None
        for cats in (
            ["Bag"] * 10,  # perfect
            ["Coat"] * 4 + ["Bag"] + ["Coat"] * 5,  # first hit at rank 5
            ["t-shirt-top"] + ["Coat"] * 9,  # slug of the query's category counts as the same
            None,  # request failed
        )
    ]
    report = score(queries, results, k=10)
    assert report.queries == 4 and report.failed == 1
    assert report.per_category["Bag"] == {"queries": 2, "r_at_1": 0.5, "r_at_5": 1.0, "r_at_10": 1.0, "p_at_10": 0.55}
    assert report.per_category["T-shirt/top"] == {
        "queries": 1, "r_at_1": 1.0, "r_at_5": 1.0, "r_at_10": 1.0, "p_at_10": 0.1,
    }  # fmt: skip
    assert report.overall == {"r_at_1": pytest.approx(0.6667), "r_at_5": 1.0, "r_at_10": 1.0, "p_at_10": 0.4}
    assert "ALL" in format_report(report, "t")


def test_item_recall_and_self_match_count_the_item_or_its_duplicates_only() -> None:
    queries = [
        Query("s1", "Bag", frozenset({"a"}), "shop"),
        Query("s2", "Bag", frozenset({"b", "b-twin"}), "shop"),
        Query("s3", "Coat", frozenset({"c"}), "shop"),
        Query("o1", "Bag", frozenset({"a"}), "self"),
        Query("o2", "Bag", frozenset({"b", "b-twin"}), "self"),
        Query("o3", "Coat", frozenset({"c"}), "self"),
    ]
    bags = [("Bag", f"other{i}") for i in range(10)]
    results = [
        [("Bag", "a"), *bags[:9]],  # the item first
        [*bags[:4], ("Bag", "b-twin"), *bags[4:9]],  # a duplicate image of it, 5th: R@10 only
        [("Coat", f"c{i}") for i in range(10)],  # right category, never the item
        [("Bag", "a"), *bags[:9]],
        [("Bag", "b-twin"), *bags[:9]],  # an exact duplicate first counts
        [("Coat", "c1"), ("Coat", "c"), *bags[:8]],
    ]
    report = score(queries, results, k=10)
    assert report.items == {
        "item_r_at_1": pytest.approx(0.3333), "item_r_at_10": pytest.approx(0.6667), "item_queries": 3,
        "self_match_at_1": pytest.approx(0.6667), "self_queries": 3,
    }  # fmt: skip
    # Category metrics come from the shop photos only: a catalog image finding its own category says nothing.
    assert report.overall["p_at_10"] == pytest.approx(1.0) and report.per_category["Bag"]["queries"] == 2
    text = format_report(report, "t")
    assert "R@1 0.333" in text and "self-match@1 (catalog images, 3): 0.667" in text


def test_queries_load_from_jsonl_or_category_folders(tmp_path: Path) -> None:
    catalog = write_fmnist_catalog(tmp_path / "q", split="test", limit=12)
    from_file = load_queries(str(catalog), limit=5)
    assert len(from_file) == 5 and from_file[0].image_uri.startswith("file:///")
    assert load_queries(str(catalog.parent)) == load_queries(str(catalog))
    (tmp_path / "dirs" / "Bag").mkdir(parents=True)
    shutil.copy(catalog.parent / "images" / "fmnist-test-00000.png", tmp_path / "dirs" / "Bag" / "x.png")
    assert [q.category for q in load_queries(str(tmp_path / "dirs"))] == ["Bag"]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    catalog = write_fmnist_catalog(root / "shop", limit=300)
    manifest = rebuild(str(catalog), str(root / "idx"), FakeEmbedder(), RebuildOptions(progress=False, n_trees=8))
    return root / "idx" / "versions" / manifest["version"]


def test_in_process_evaluation_on_test_split_queries(index_dir: Path, tmp_path: Path) -> None:
    queries = load_queries(str(write_fmnist_catalog(tmp_path / "q", split="test", limit=40)))
    with IndexReader.open(index_dir, embedder_sha256=FakeEmbedder().sha256, dim=64) as reader:
        report = evaluate_in_process(reader, FakeEmbedder(), queries)
    assert report.queries == 40 and report.failed == 0
    # Thumbnails are a weak embedding, but far better than the 0.1 of chance.
    assert report.overall["r_at_10"] > 0.7 and report.overall["p_at_10"] > 0.3
