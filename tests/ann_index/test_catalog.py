"""Catalog validation with line numbers, and the Fashion-MNIST demo catalog writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ann_index.catalog.demo import SHOP_SIZE, is_current_demo, write_fmnist_catalog
from ann_index.catalog.rows import parse_catalog
from imgcore.fmnist import CLASS_NAMES
from imgcore.image import decode_image


def _row(item_id: str, **extra: object) -> str:
    row = {"item_id": item_id, "image": f"images/{item_id}.png", "category": "Bag", "title": f"Bag {item_id}"}
    return json.dumps({**row, **extra})


def test_valid_rows_parse_with_attrs_defaulting_to_empty_and_blank_lines_skipped() -> None:
    text = "\n".join([_row("a", attrs={"price": 990}), "", "   ", _row("b")]) + "\n"
    catalog = parse_catalog(text)
    assert catalog.rows == 2 and not catalog.errors and not catalog.duplicates
    assert [(i.line, i.item_id, i.attrs) for i in catalog.items] == [(1, "a", {"price": 990}), (4, "b", {})]
    assert catalog.categories == {"Bag": 2}


def test_every_bad_line_is_reported_with_its_line_number() -> None:
    lines = [
        _row("ok-1"),
        '{"item_id": "x", "image": ',  # 2: truncated JSON
        json.dumps({"item_id": "y", "image": "a.png", "title": "t"}),  # 3: no category
        json.dumps({"item_id": 7, "image": "a.png", "category": "Bag", "title": "t"}),  # 4: id not a string
        _row("z", attrs=["red"]),  # 5: attrs not an object
        '["a list"]',  # 6
        _row("   "),  # 7: blank id
        _row("ok-1"),  # 8: duplicate of line 1
        _row("ok-2"),
    ]
    catalog = parse_catalog("\n".join(lines))
    assert [i.item_id for i in catalog.items] == ["ok-1", "ok-2"]
    found = {e.line: str(e) for e in catalog.errors}
    assert sorted(found) == [2, 3, 4, 5, 6, 7]
    assert "not valid JSON" in found[2] and "category" in found[3] and "item_id" in found[4]
    assert "attrs must be an object" in found[5] and "(z)" in found[5]
    assert [str(d) for d in catalog.duplicates] == ["line 8 (ok-1): duplicate item_id (first on line 1)"]
    assert catalog.rows == 9


def test_fashion_mnist_catalog_is_white_background_png_with_stable_ids(tmp_path: Path) -> None:
    path = write_fmnist_catalog(tmp_path / "cat", split="test", limit=25)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 25 and rows[3]["item_id"] == "fmnist-test-00003"
    assert {r["category"] for r in rows} <= set(CLASS_NAMES)
    assert rows[3]["title"] == f"{rows[3]['category']} #00003"
    # No product ids without shop photos: each row is a product of its own, as before products existed.
    assert set(rows[3]["attrs"]) == {"brand", "price", "currency", "in_stock", "label"}
    assert isinstance(rows[3]["attrs"]["in_stock"], bool)
    image = decode_image((tmp_path / "cat" / rows[3]["image"]).read_bytes())
    assert image.shape == (112, 112, 3)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    assert np.median(border) == 255 and image.min() < 128  # white background, dark item
    again = write_fmnist_catalog(tmp_path / "again", split="test", limit=25)
    assert again.read_text() == path.read_text()  # ids, titles, prices and brands are deterministic
    assert not parse_catalog(path.read_text()).errors


def test_demo_products_have_a_shoppers_photo_as_second_image(tmp_path: Path) -> None:
    path = write_fmnist_catalog(tmp_path / "cat", limit=200, shop_photos=True)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    by_product: dict[str, list[dict]] = {}
    for row in rows:
        by_product.setdefault(row["attrs"]["product_id"], []).append(row)
    assert len(by_product) == 200 and all(r["attrs"]["product_id"] == r["item_id"][:18] for r in rows)
    pairs = [images for images in by_product.values() if len(images) == 2]
    assert 8 <= len(pairs) <= 35 and all(len(images) <= 2 for images in by_product.values())  # about one in ten
    for first, second in pairs:
        assert second["item_id"] == first["item_id"] + "-shop" and second["category"] == first["category"]
        assert second["attrs"] == first["attrs"]  # price, brand and stock belong to the product
        photo = decode_image((tmp_path / "cat" / second["image"]).read_bytes())
        assert photo.shape == (SHOP_SIZE, SHOP_SIZE, 3) and np.median(photo[0]) < 255  # a tinted, noisy frame
    in_stock = [r["attrs"]["in_stock"] for r in rows]
    assert 0.7 < sum(in_stock) / len(in_stock) < 0.97
    assert not parse_catalog(path.read_text()).errors
    # A --limit catalog is the full one's first products: the same products get a second image.
    prefix = write_fmnist_catalog(tmp_path / "prefix", limit=50, shop_photos=True).read_text().splitlines()
    assert prefix == [json.dumps(r, ensure_ascii=False) for r in rows if int(r["item_id"][13:18]) < 50]
    assert is_current_demo(path)
    old = tmp_path / "old.jsonl"  # a demo catalog written before products and stock
    old.write_text(_row("fmnist-train-00000", attrs={"brand": "Mori", "price": 990}) + "\n")
    assert not is_current_demo(old) and not is_current_demo(tmp_path / "missing.jsonl")
