"""Attribute filters (issue 28): the parser's errors, and the column masks agreeing with row-by-row evaluation."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ann_index.serving.columns import Columns, StringTable
from ann_index.serving.filters import parse_filter
from imgcore.errors import InvalidInput

BRANDS = ["Mori", "Kumo", "Sora", "Umi"]


def _rows(n: int, seed: int = 0) -> list[tuple[str, str, dict[str, object]]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        attrs: dict[str, object] = {"brand": rnd.choice(BRANDS), "price": rnd.randrange(500, 30000, 100)}
        if i % 3:
            attrs["in_stock"] = rnd.random() < 0.5
        if i % 7 == 0:
            attrs["product_id"] = f"p{i // 14}"
        out.append((f"item-{i}", rnd.choice(["Bag", "Coat"]), attrs))
    return out


def test_parses_the_issue_example_and_matches_rows() -> None:
    where = parse_filter('brand IN ("Mori", "Kumo") AND price < 10000 AND in_stock = true')
    assert where is not None and where.keys == {"brand", "price", "in_stock"}
    assert where.matches({"brand": "Mori", "price": 9999, "in_stock": True})
    assert not where.matches({"brand": "Mori", "price": 10000, "in_stock": True})
    assert not where.matches({"brand": "Sora", "price": 10, "in_stock": True})
    assert not where.matches({"brand": "Kumo", "price": 10})  # no in_stock: a comparison on it is false


def test_or_parentheses_not_equal_and_keywords_in_any_case() -> None:
    where = parse_filter('(category = "Bag" or price >= 20000) and brand != "Umi"')
    assert where is not None
    assert where.matches({"category": "Bag", "price": 1, "brand": "Mori"})
    assert where.matches({"category": "Coat", "price": 20000, "brand": "Kumo"})
    assert not where.matches({"category": "Bag", "price": 1, "brand": "Umi"})
    assert not where.matches({"category": "Bag", "price": 1})  # != on a missing key is false too


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("price <", "ends early"),
        ('price < "cheap"', "needs a number"),
        ("brand = Mori", "expected a value"),
        ('brand IN "Mori"', "expected '('"),
        ('(brand = "Mori"', "expected ')'"),
        ('brand = "Mori" price < 3', "unexpected 'price'"),
        ("price ~ 3", "unexpected character '~'"),
        ('AND = "x"', "expected an attribute name"),
        ("price = true = 1", "unexpected '='"),
    ],
)
def test_malformed_filters_are_400_naming_the_problem(text: str, names: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_filter(text)
    assert err.value.reason == "bad_filter"
    assert names in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        'brand IN ("Mori", "Kumo")',
        "price < 10000",
        "price >= 29000 OR price <= 600",
        'in_stock = false AND category = "Bag"',
        'brand != "Mori" AND (in_stock = true OR price > 25000)',
        'product_id = "p3"',
        "price = 1200 OR price = 20000",
        'nosuchkey = "x" OR brand = "Umi"',
    ],
)
def test_column_masks_equal_row_by_row_evaluation(text: str) -> None:
    rows = _rows(2000)
    columns = Columns([(item, cat, json.dumps(attrs)) for item, cat, attrs in rows], len(rows))
    where = parse_filter(text)
    assert where is not None
    expected = np.array([where.matches({**attrs, "category": cat}) for _, cat, attrs in rows])
    mask = columns.mask(where)
    assert mask.dtype == bool and mask.shape == (2000,)
    assert (mask == expected).all() and 0 < int(mask.sum()) < 2000


def test_products_and_image_counts() -> None:
    rows = [("a", "Bag", {"product_id": "P"}), ("b", "Bag", {"product_id": "P"}), ("c", "Bag", {"group_id": 7})]
    columns = Columns([(item, cat, json.dumps(attrs)) for item, cat, attrs in rows], 3)
    names = [columns.product_names[code] for code in columns.product]
    assert names == ["P", "P", "7"]
    assert [int(columns.images[code]) for code in columns.product] == [2, 2, 1]


def test_a_string_table_gives_back_every_name_by_number() -> None:
    names = ["p-1", "", "pärka ☂", "x" * 300, "p-1"]
    table = StringTable(names)
    assert len(table) == 5 and [table[n] for n in range(5)] == names
    assert table[-1] == "p-1" and table[-5] == "p-1"
    for bad in (5, -6):
        with pytest.raises(IndexError):
            table[bad]
    assert len(StringTable([])) == 0
