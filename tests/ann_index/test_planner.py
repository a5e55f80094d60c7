"""The query planner (issue 28): filtered and grouped answers against exact search over a real built version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ann_index.files import l2_normalise
from ann_index.items import IndexItem
from ann_index.serving import planner
from ann_index.serving.filters import parse_filter
from ann_index.serving.hits import QueryOptions
from ann_index.serving.reader import IndexReader
from tests.ann_index.fakes import clustered, make_version

N = 3000


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list[IndexItem]]:
    vectors, labels = clustered(N, 16, clusters=30, spread=0.6, seed=3)
    rng = np.random.default_rng(4)
    vectors[:600] = vectors[:600:3].repeat(3, axis=0) + 0.1 * rng.normal(size=(600, 16))  # a product's shots look alike
    labels[:600] = labels[:600:3].repeat(3)
    items = []
    for i, lab in enumerate(labels):
        attrs: dict[str, object] = {"bucket": i % 1000, "brand": ["Mori", "Kumo", "Sora"][i % 3]}
        if i < 600:  # 200 products of three images each
            attrs["product_id"] = f"p{i // 3}"
        items.append(IndexItem(f"item-{i:04d}", f"cat{int(lab) % 3}", f"Item {i}", f"file:///img/{i}.png", attrs))
    out = tmp_path_factory.mktemp("planner") / "v"
    make_version(out, vectors, items)
    return out, vectors, items


def _exact(vectors: np.ndarray, items: list[IndexItem], query: np.ndarray, k: int, text: str) -> list[str]:
    """Ground truth: the k best distinct products among the items passing the filter."""
    where = parse_filter(text)
    assert where is not None
    scores = l2_normalise(vectors) @ l2_normalise(query[None, :])[0]
    out: list[str] = []
    for i in np.argsort(-scores, kind="stable"):
        item = items[int(i)]
        product = str(item.attrs.get("product_id", item.item_id))
        if where.matches({**item.attrs, "category": item.category}) and product not in out:
            out.append(product)
    return out[:k]


@pytest.mark.parametrize("exact_min", [4096, 1])  # every filter exact, then annoy + post-filter where it can
@pytest.mark.parametrize("text", ["bucket < 500", "bucket < 100", "bucket < 10", 'bucket < 2 AND brand = "Mori"'])
def test_filtered_grouped_answers_match_exact_search(
    version: tuple[Path, np.ndarray, list[IndexItem]], text: str, exact_min: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planner, "EXACT_MIN", exact_min)
    monkeypatch.setattr(planner, "EXACT_PER_SEARCH_K", 0 if exact_min == 1 else 2)
    path, vectors, items = version
    options = QueryOptions(where=parse_filter(text), group=True)
    where = options.where
    assert where is not None
    recalls = []
    with IndexReader.open(path, embedder_sha256=None, dim=None) as reader:
        for q in range(0, N, 150):
            hits = reader.query(vectors[q], 10, None, options)[0]
            assert all(where.matches({**h.attrs, "category": h.category}) for h in hits)
            products = [h.product_id for h in hits]
            assert len(set(products)) == len(products)
            truth = _exact(vectors, items, vectors[q], 10, text)
            if len(truth) < 10:  # fewer than k match: exactly all of them
                assert sorted(products) == sorted(truth)
            recalls.append(len(set(products) & set(truth)) / len(truth))
    assert np.mean(recalls) >= (1.0 if exact_min > 1 else 0.95)


def test_grouping_gives_one_hit_per_product_with_its_image_count(
    version: tuple[Path, np.ndarray, list[IndexItem]],
) -> None:
    path, vectors, _ = version
    with IndexReader.open(path, embedder_sha256=None, dim=None) as reader:
        images = reader.query(vectors[0], 10, None, QueryOptions(group=False))[0]
        products = reader.query(vectors[0], 10, None, QueryOptions(group=True))[0]
    assert images[0].item_id == "item-0000" and images[0].product_id == "p0" and images[0].images == 3
    assert len({h.product_id for h in products}) == 10
    assert [h.item_id for h in products][0] == "item-0000"


def test_a_hidden_image_lets_the_next_image_of_its_product_stand_in(
    version: tuple[Path, np.ndarray, list[IndexItem]],
) -> None:
    path, vectors, _ = version
    query = l2_normalise(vectors[:3]).sum(axis=0)  # close to all three images of product p0
    with IndexReader.open(path, embedder_sha256=None, dim=None) as reader:
        shown = reader.query(query, 5, None, QueryOptions(group=True))[0]
        hidden = reader.query(query, 5, None, QueryOptions(group=True, hidden=frozenset({shown[0].item_id})))[0]
    assert shown[0].product_id == "p0"
    assert hidden[0].product_id == "p0" and hidden[0].item_id != shown[0].item_id
    assert hidden[0].score <= shown[0].score
