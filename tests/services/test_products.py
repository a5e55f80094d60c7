"""Products, attribute filters and near-duplicates (issue 28) through real services: the demo catalog's rows with
product ids and attributes, published as 3 partitions behind a real gateway (a product's images in one of them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from ann_index.items import IndexItem
from ann_index.thumbs import ThumbPack
from imgcore.fingerprint import DUPLICATE_PRINT_SCORE, encoded_fingerprints, print_score
from services.stack import ServiceProcess, stop_all
from tests.helpers.partitions import Rows, demo_rows, publish_partitioned, start_partitions
from tests.helpers.stack import Stack, running_stack

pytestmark = pytest.mark.stack
N = 3
BRANDS = ["Mori", "Kumo", "Sora", "Umi"]


@dataclasses.dataclass
class Catalog:
    stack: Stack
    parts: list[ServiceProcess]
    rows: Rows
    product: list[str]  # the 3-image product's item ids, the first one the query
    rare: list[str]  # one item of each of the 7 products of brand "Rare"
    dup: tuple[str, str]  # an item and its near-identical copy listed as another product


def _nearest(vecs: np.ndarray, i: int, n: int) -> list[int]:
    sims = vecs @ vecs[i]
    sims[i] = -np.inf
    return [int(j) for j in np.argsort(-sims)[:n]]


def _with_products(rows: Rows) -> tuple[Rows, list[str], list[str], tuple[str, str]]:
    vecs = rows.vectors / np.linalg.norm(rows.vectors, axis=1, keepdims=True)
    attrs = [
        {"brand": BRANDS[i % 4], "price": (i * 37) % 20000, "in_stock": i % 2 == 0} for i in range(len(rows.items))
    ]
    product = [0, *_nearest(vecs, 0, 2)]  # three shots of one product look alike: its item and 2 nearest
    for i in product:
        attrs[i]["product_id"] = "P-three"
    rare = [1500, 1600, 1700, 1800, 1900, 2000, 2100]
    for n, i in enumerate(rare):
        attrs[i].update(brand="Rare", product_id=f"P-rare-{n}")
    attrs[1501].update(brand="Rare", product_id="P-rare-0")  # a second image of a rare product
    items = [dataclasses.replace(it, attrs={**it.attrs, **a}) for it, a in zip(rows.items, attrs, strict=True)]
    src = 42
    items.append(IndexItem("dup-of-42", items[src].category, "copy", items[src].image, {"brand": "Mori", "price": 1}))
    noise = np.random.default_rng(0).normal(scale=0.002, size=rows.vectors.shape[1]).astype(np.float32)
    vectors = np.vstack([rows.vectors, (vecs[src] + noise)[None, :]])
    thumbs = ThumbPack.gather([rows.thumbs], [*range(len(rows.items)), src])
    ids = [items[i].item_id for i in product]
    return (
        Rows(vectors, items, thumbs, rows.embedder),
        ids,
        [items[i].item_id for i in rare],
        (items[src].item_id, "dup-of-42"),
    )


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    root = tmp_path_factory.mktemp("products")
    rows, product, rare, dup = _with_products(demo_rows())
    store = root / "store"
    store.mkdir()
    publish_partitioned(store, N, rows=rows)
    parts = start_partitions(store, N, root)
    try:
        with running_stack(extra={"gateway": ["--index-url", ",".join(p.url for p in parts)]}) as stack:
            yield Catalog(stack, parts, rows, product, rare, dup)
    finally:
        stop_all(parts)


def _similar(catalog: Catalog, item_id: str, **params: object) -> httpx.Response:
    url = f"{catalog.stack.gateway_url}/v1/items/{item_id}/similar"
    return httpx.get(url, params={"k": 10, **params}, timeout=30, trust_env=False)


def test_a_product_with_three_images_takes_one_slot(catalog: Catalog) -> None:
    first, *others = catalog.product
    images = _similar(catalog, first, group="none").json()["results"]
    assert {h["item_id"] for h in images[:2]} == set(others)  # per image: its own product's shots come first
    grouped = _similar(catalog, others[0]).json()["results"]
    assert len(grouped) == 10 and len({h["product_id"] for h in grouped}) == 10
    assert not {h["item_id"] for h in grouped} & set(catalog.product)  # its own product is not "similar"
    three = [h for h in _similar(catalog, grouped[0]["item_id"]).json()["results"] if h["product_id"] == "P-three"]
    assert len(three) <= 1 and all(h["images"] == 3 for h in three)


def _index(catalog: Catalog, item_id: str) -> int:
    return [it.item_id for it in catalog.rows.items].index(item_id)


def test_a_filter_matching_seven_products_returns_exactly_those_seven(catalog: Catalog) -> None:
    body = _similar(catalog, catalog.product[0], filter='brand = "Rare"').json()
    assert "partial" not in body
    products = [h["product_id"] for h in body["results"]]
    assert sorted(products) == sorted(f"P-rare-{n}" for n in range(7))
    assert next(h for h in body["results"] if h["product_id"] == "P-rare-0")["images"] == 2


def test_in_and_range_filters_never_return_a_non_matching_item(catalog: Catalog) -> None:
    text = 'brand IN ("Mori", "Kumo") AND price < 5000 AND in_stock = true'
    for item in catalog.rows.items[100:3000:400]:
        results = _similar(catalog, item.item_id, filter=text).json()["results"]
        assert len(results) == 10
        for hit in results:
            attrs = hit["attrs"]
            assert attrs["brand"] in ("Mori", "Kumo") and attrs["price"] < 5000 and attrs["in_stock"] is True
        ranged = _similar(catalog, item.item_id, filter="price >= 19000 OR price <= 100", group="none").json()
        assert ranged["results"] and all(
            h["attrs"]["price"] >= 19000 or h["attrs"]["price"] <= 100 for h in ranged["results"]
        )


@pytest.mark.parametrize(
    ("text", "names"),
    [("price <", "ends early"), ('brand IN ("Mori"', "expected ')'"), ('colour = "red"', "colour")],
)
def test_malformed_or_unknown_key_filters_are_400_json(catalog: Catalog, text: str, names: str) -> None:
    resp = _similar(catalog, catalog.product[0], filter=text)
    assert resp.status_code == 400 and names in resp.json()["error"], resp.text
    query = httpx.post(
        catalog.parts[0].url + "/v1/query",
        json={"vectors": [catalog.rows.vectors[0].tolist()], "k": 3, "filter": text},
        timeout=30,
        trust_env=False,
    )
    assert query.status_code == 400 and names in query.json()["error"]
    assert _similar(catalog, catalog.product[0]).status_code == 200  # still up


def test_dedupe_collapses_a_near_duplicate_listing_through_the_partitioned_gateway(catalog: Catalog) -> None:
    original, copy = catalog.dup
    vecs = catalog.rows.vectors / np.linalg.norm(catalog.rows.vectors, axis=1, keepdims=True)
    at = _index(catalog, original)
    # An item that has the original (and so its copy) among its 5 nearest: both are in its top 10.
    near = next(j for j in _nearest(vecs, at, 30)[1:] if at in _nearest(vecs, j, 5))
    neighbour = catalog.rows.items[near].item_id
    plain = [h["item_id"] for h in _similar(catalog, neighbour).json()["results"]]
    assert original in plain and copy in plain
    answer = _similar(catalog, neighbour, dedupe="true")
    assert answer.status_code == 200 and answer.json()["results"], answer.text[:600]
    deduped = answer.json()["results"]
    ids = [h["item_id"] for h in deduped]
    assert len(ids) == 10 and (original in ids) != (copy in ids)
    assert "vector" not in deduped[0] and "print" not in deduped[0]
    # Near-identical by picture, not by vector: look-alike products as close in the embedding as the copy stay
    # (a cosine rule dropped them), and the answer is the plain one with exactly the pictures' duplicates out.
    wider = [h["item_id"] for h in _similar(catalog, neighbour, k=30).json()["results"]]
    assert ids == _collapsed_by_pictures(catalog, wider)[:10]
    at_ids = [_index(catalog, i) for i in ids]
    # What stays is distinct pictures: the item-level embedder (fmnist-lite0 1.3.0) puts the copy nearer its
    # original than any two items kept in the answer (the 1.2.0 embedder put look-alikes at the copy's cosine).
    bar = float(vecs[at] @ vecs[_index(catalog, copy)])
    kept = [float(vecs[a] @ vecs[b]) for n, a in enumerate(at_ids) for b in at_ids[n + 1 :]]
    assert max(kept) < bar, (max(kept), bar)


def _collapsed_by_pictures(catalog: Catalog, ids: list[str]) -> list[str]:
    """`ids` without any whose thumbnail's fingerprint matches an earlier kept one's (imgsearch index duplicates)."""
    kept: list[tuple[str, np.ndarray]] = []
    for item_id in ids:
        prints = encoded_fingerprints(catalog.rows.thumbs[_index(catalog, item_id)])
        assert prints is not None
        if not any(print_score(prints, other) >= DUPLICATE_PRINT_SCORE for _, other in kept):
            kept.append((item_id, prints))
    return [item_id for item_id, _ in kept]
