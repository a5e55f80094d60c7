"""A version's attributes as columns (issue 28): one array per key over annoy ids, and each row's product.

Built once when a version opens, from meta.sqlite (`items.attrs`, `items.category`): strings dictionary-coded,
numbers as float64 (NaN where absent), booleans as int8 (-1 where absent). A filter then evaluates to a boolean
mask over every item in a few vectorised passes, so the planner knows exactly how many items match before it
chooses how to search.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ann_index.serving.filters import BoolOp, Cmp, Filter, In, Node, Value
from imgcore.index_wire import product_key

_RANGE = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


@dataclass
class Column:
    """One key's values over all items."""

    count: int
    num: np.ndarray | None = None  # float64, NaN: no number
    codes: np.ndarray | None = None  # int32, -1: no string
    vocab: dict[str, int] = field(default_factory=dict)
    flags: np.ndarray | None = None  # int8: -1 none, 0 false, 1 true

    def equal(self, value: Value) -> np.ndarray:
        if isinstance(value, bool):
            return self.flags == int(value) if self.flags is not None else np.zeros(self.count, bool)
        if isinstance(value, float):
            return self.num == value if self.num is not None else np.zeros(self.count, bool)
        code = self.vocab.get(value)
        if self.codes is None or code is None:
            return np.zeros(self.count, bool)
        return self.codes == code

    def present(self) -> np.ndarray:
        out = np.zeros(self.count, bool)
        if self.num is not None:
            out |= ~np.isnan(self.num)
        if self.codes is not None:
            out |= self.codes >= 0
        if self.flags is not None:
            out |= self.flags >= 0
        return out


class StringTable:
    """Strings by number, held as one UTF-8 buffer and offsets instead of a list of str objects: an index
    worker forked from the process that opened the version reads a name without touching a shared object's
    reference count, so the pages stay shared (a list of 2 x 200,000 names had every worker copy ~36 MiB)."""

    def __init__(self, names: Iterable[str]) -> None:
        encoded = [name.encode() for name in names]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._buffer = b"".join(encoded)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, n: int) -> str:
        if not -len(self) <= n < len(self):
            raise IndexError(n)
        n %= len(self)
        return self._buffer[int(self._offsets[n]) : int(self._offsets[n + 1])].decode()


class Columns:
    """Every filterable key of a version (`category` plus each attrs key) and each item's product id."""

    def __init__(self, rows: Iterable[tuple[str, str, str]], count: int) -> None:
        """`rows`: (item_id, category, attrs JSON) in annoy-id order."""
        self.count = count
        self.columns: dict[str, Column] = {}
        products: list[str] = []
        items: dict[str, int] = {}
        item_codes: list[int] = []
        for aid, (item_id, category, attrs_json) in enumerate(rows):
            attrs: dict[str, Any] = json.loads(attrs_json)
            products.append(product_key(item_id, attrs))
            item_codes.append(items.setdefault(item_id, len(items)))
            self._put("category", aid, category)
            for key, value in attrs.items():
                if isinstance(value, str | int | float | bool):
                    self._put(key, aid, value)
        codes: dict[str, int] = {}
        self.product = np.array([codes.setdefault(p, len(codes)) for p in products], dtype=np.int64)
        self.product_names = StringTable(codes)
        self.item = np.array(item_codes, dtype=np.int64)  # an item may have several rows (vectors)
        self.item_names = StringTable(items)
        self.images = np.bincount(self.product, minlength=len(codes)) if count else np.zeros(0, np.int64)

    def _put(self, key: str, aid: int, value: str | float | bool) -> None:
        col = self.columns.get(key)
        if col is None:
            col = self.columns[key] = Column(self.count)
        if isinstance(value, bool):
            if col.flags is None:
                col.flags = np.full(self.count, -1, np.int8)
            col.flags[aid] = int(value)
        elif isinstance(value, int | float):
            if col.num is None:
                col.num = np.full(self.count, np.nan)
            col.num[aid] = float(value)
        else:
            if col.codes is None:
                col.codes = np.full(self.count, -1, np.int32)
            col.codes[aid] = col.vocab.setdefault(value, len(col.vocab))

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self.columns)

    def mask(self, where: Filter) -> np.ndarray:
        """Boolean mask over annoy ids of the items that pass `where` (unknown keys match nothing)."""
        return self._eval(where.root)

    def _eval(self, node: Node) -> np.ndarray:
        if isinstance(node, BoolOp):
            masks = [self._eval(p) for p in node.parts]
            return np.logical_and.reduce(masks) if node.op == "AND" else np.logical_or.reduce(masks)
        col = self.columns.get(node.key)
        if col is None:
            return np.zeros(self.count, bool)
        if isinstance(node, In):
            return np.logical_or.reduce([col.equal(v) for v in node.values])
        return _compare(col, node)


def _compare(col: Column, node: Cmp) -> np.ndarray:
    if node.op == "=":
        return col.equal(node.value)
    if node.op == "!=":
        return col.present() & ~col.equal(node.value)
    if col.num is None:
        return np.zeros(col.count, bool)
    with np.errstate(invalid="ignore"):
        return np.asarray(_RANGE[node.op](col.num, float(node.value)))
