"""The torch-free parts of training: the held-out split by product, product groups from the catalog, and the
shopper-photo augmentation (the item keeps its pixels; the background, scale and place change)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.catalog.load import ReadOptions, RebuildRefused
from ann_index.catalog.rows import CatalogItem
from embedder.training.augment import Jitter, Look, matte, query_photo, shop_photo, train_view
from embedder.training.catalog_data import group_of, held_out, load_train_set, product_classes, size_for
from embedder.training.recipe import Recipe
from imgcore.fmnist import load_fmnist, render_catalog, render_shop_photo


def _item(attrs: dict[str, object]) -> CatalogItem:
    return CatalogItem(1, "x1", "x1.png", "Bag", "X", attrs)


def test_rows_of_one_product_share_a_group_and_rows_without_one_are_their_own() -> None:
    assert group_of(_item({"product_id": "p7"})) == group_of(
        CatalogItem(2, "x2", "x2.png", "Bag", "Y", {"product_id": "p7"})
    )
    assert group_of(_item({"group_id": 3})) == "group_id:3"
    assert group_of(_item({})) == "item:x1"


def test_the_held_out_split_is_stable_and_near_its_fraction() -> None:
    groups = [f"item:{i}" for i in range(4000)]
    first = [held_out(g, 0.15) for g in groups]
    assert first == [held_out(g, 0.15) for g in groups]
    assert 0.12 < np.mean(first) < 0.18


@pytest.fixture(scope="module")
def item() -> np.ndarray:
    images, _ = load_fmnist("test")
    return render_catalog(images[0], 112)


def test_shop_photo_puts_the_item_on_a_new_background_at_a_new_scale(item: np.ndarray) -> None:
    alpha = matte(item)
    assert alpha[0, 0] == 0.0 and alpha.max() == 1.0  # border is background, the item is opaque somewhere
    photo = shop_photo(item, np.random.default_rng(0), 224)
    assert photo.shape == (224, 224, 3) and photo.dtype == np.uint8
    assert not np.array_equal(photo[0, 0], item[0, 0])  # the white studio background is gone
    view = train_view(item, np.random.default_rng(1), 0.0, 1.0)
    assert view.shape == item.shape
    assert np.array_equal(query_photo(item, 0, 5), query_photo(item, 0, 5))  # the same query in every run
    assert not np.array_equal(query_photo(item, 0, 5), query_photo(item, 0, 6))


def test_a_look_makes_views_at_the_training_size_from_items_of_another_kind() -> None:
    """Fashion-MNIST's look (models/fmnist-lite0/train.py): items are 28 x 28 originals, rendered per view."""
    original = load_fmnist("test")[0][0]
    look = Look(render_catalog, render_shop_photo, Jitter(4.0, (0.88, 1.04), 0.04), whole_at_size=True)
    for seed, (p_catalog, p_crop) in enumerate([(1.0, 0.0), (0.0, 1.0), (0.0, 0.0)]):
        view = train_view(original, np.random.default_rng(seed), p_catalog, p_crop, look, 112)
        assert view.shape == (112, 112, 3) and view.dtype == np.uint8


def test_a_recipe_refuses_an_unknown_choice(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batchnorm must be one of imagenet, batch"):
        Recipe("c", tmp_path, batchnorm="frozen")


def test_load_train_set_groups_products_and_holds_out_whole_products(tmp_path: Path) -> None:
    catalog = write_fmnist_catalog(tmp_path, limit=120)
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    for n, row in enumerate(rows):
        row["attrs"]["product_id"] = f"p{n // 3}"  # three images per product
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_train_set(catalog.as_uri(), 64, 0.3, ReadOptions(progress=False))
    assert data.images.shape == (120, 64, 64, 3) and data.has_products
    assert len(set(data.group.tolist())) == 40
    for g in set(data.group.tolist()):
        assert len(set(data.val[data.group == g].tolist())) == 1  # a product is held out whole or not at all
    assert 0 < data.val.sum() < 120


def test_a_catalog_the_rebuild_refuses_is_refused_for_training_too(tmp_path: Path) -> None:
    row = {"item_id": "a", "image": "a.png", "category": "Bag", "title": "A"}
    (tmp_path / "c.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(RebuildRefused, match="duplicate item_id"):
        load_train_set((tmp_path / "c.jsonl").as_uri(), 64, 0.2, ReadOptions(progress=False))


def test_single_image_items_are_each_their_own_class_and_products_group_their_images(tmp_path: Path) -> None:
    catalog = write_fmnist_catalog(tmp_path / "cat", limit=60)
    data = load_train_set(str(catalog), 56, 0.2, ReadOptions(progress=False))
    labels, n = product_classes(data)
    train = ~data.val
    assert n == int(train.sum()) and sorted(labels[train].tolist()) == list(range(n))  # one class per item
    assert (labels[data.val] == -1).all()  # held-out items are never trained on
    data.group[:4] = data.group[0]  # one product with four images: products, not items, are the classes
    labels, n = product_classes(data)
    assert n == len(set(data.group[:4][train[:4]].tolist()) - {-1}) == 1 and (labels[4:] == -1).all()


def test_the_training_size_follows_the_catalogs_images() -> None:
    assert size_for(np.array([112, 112, 120])) == 112  # the demo catalog: its own 112 px
    assert size_for(np.array([28, 30])) == 64 and size_for(np.array([1200, 800, 3000])) == 224
    assert size_for(np.array([130])) == 144  # up to a multiple of 16
