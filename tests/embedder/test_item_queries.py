"""Item queries of a catalog (embedder.training.item_queries) and the item metrics they give in-process."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.evaluate import evaluate_in_process, load_queries
from ann_index.serving.reader import IndexReader
from embedder.training.item_queries import write_item_queries
from tests.ann_index.fakes import FakeEmbedder


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_sampled_item_gets_a_shop_photo_and_its_own_catalog_image(tmp_path: Path) -> None:
    catalog = write_fmnist_catalog(tmp_path / "cat", limit=40)
    twin = catalog.parent / "images" / "fmnist-train-00001.png"
    twin.write_bytes((catalog.parent / "images" / "fmnist-train-00000.png").read_bytes())  # an exact duplicate
    path = write_item_queries(catalog.as_uri(), tmp_path / "q", 40, seed=3)
    rows = _rows(path)
    assert len(rows) == 80 and {r["attrs"]["style"] for r in rows} == {"shop", "self"}  # type: ignore[index]
    by_item = {(r["attrs"]["of"], r["attrs"]["style"]): r for r in rows}  # type: ignore[index]
    first = by_item[("fmnist-train-00000", "self")]
    assert first["attrs"]["expect"] == ["fmnist-train-00000", "fmnist-train-00001"]  # type: ignore[index]
    assert by_item[("fmnist-train-00002", "self")]["attrs"]["expect"] == ["fmnist-train-00002"]  # type: ignore[index]
    own = (path.parent / str(first["image"])).read_bytes()
    assert own == (catalog.parent / "images" / "fmnist-train-00000.png").read_bytes()
    photo = cv2.imread(str(path.parent / str(by_item[("fmnist-train-00002", "shop")]["image"])))
    assert photo.shape == (224, 224, 3)
    again = write_item_queries(catalog.as_uri(), tmp_path / "q2", 40, seed=3)
    shop = "images/000002-shop.jpg"
    assert (again.parent / shop).read_bytes() == (path.parent / shop).read_bytes()
    queries = load_queries(str(path))
    assert [q.style for q in queries[:2]] == ["shop", "self"] and "fmnist-train-00000" in queries[0].expect


def test_a_catalog_of_other_items_gets_the_trainers_shop_photos(tmp_path: Path) -> None:
    catalog = write_fmnist_catalog(tmp_path / "cat", limit=12)
    rows = _rows(catalog)
    for row in rows:
        row["item_id"] = "sku-" + str(row["item_id"])[-3:]
        row["attrs"] = {"product_id": "p1"} if row["item_id"] in ("sku-003", "sku-004") else {}
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = write_item_queries(catalog.as_uri(), tmp_path / "q", 12)
    queries = {q.image_uri.rsplit("/", 1)[-1]: q for q in load_queries(str(path))}
    assert queries["000003-shop.jpg"].expect == {"sku-003", "sku-004"}  # a product's rows all count
    photo = cv2.imread(str(path.parent / "images" / "000005-shop.jpg"))
    assert photo.shape == (224, 224, 3) and float(photo.mean()) > 60  # a lit background around the item


def test_in_process_item_metrics_on_an_index_built_as_the_search_path_embeds(tmp_path: Path) -> None:
    catalog = write_fmnist_catalog(tmp_path / "cat", limit=300)
    manifest = rebuild(str(catalog), str(tmp_path / "idx"), FakeEmbedder(), RebuildOptions(progress=False, n_trees=8))
    queries = load_queries(str(write_item_queries(catalog.as_uri(), tmp_path / "q", 60)))
    version = tmp_path / "idx" / "versions" / manifest["version"]
    with IndexReader.open(version, embedder_sha256=FakeEmbedder().sha256, dim=64) as reader:
        report = evaluate_in_process(reader, FakeEmbedder(), queries)
    assert report.items["self_queries"] == 60 and report.items["item_queries"] == 60
    assert report.items["self_match_at_1"] == 1.0  # same function, same pixels, same vector
    assert 0.0 <= report.items["item_r_at_1"] <= report.items["item_r_at_10"] <= 1.0
    assert report.overall["p_at_10"] > 0.2  # a shop photo's category, from its 8x8 thumbnail
