"""Catalog validation with line numbers, and the Fashion-MNIST demo catalog writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ann_index.catalog.demo import write_fmnist_catalog
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
    assert set(rows[3]["attrs"]) == {"brand", "price", "currency", "label"}
    image = decode_image((tmp_path / "cat" / rows[3]["image"]).read_bytes())
    assert image.shape == (112, 112, 3)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    assert np.median(border) == 255 and image.min() < 128  # white background, dark item
    again = write_fmnist_catalog(tmp_path / "again", split="test", limit=25)
    assert again.read_text() == path.read_text()  # ids, titles, prices and brands are deterministic
    assert not parse_catalog(path.read_text()).errors
