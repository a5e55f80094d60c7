"""Product catalog: JSON Lines, one item per line, validated line by line.

Every problem is collected with its line number instead of stopping at the first, so a catalog owner
can fix a whole file in one round trip. Deciding whether the problems are fatal is the job's policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from imgcore.index_wire import MAX_CATEGORY_LENGTH, MAX_ITEM_ID_LENGTH, wire_json

MAX_ID_LENGTH = MAX_ITEM_ID_LENGTH
# What one row may hold: every hit carries its title and attrs, so one huge or unservable row would make
# every answer that contains it fail or balloon.
MAX_TITLE_LENGTH = 1000
MAX_ATTRS_BYTES = 16 * 1024
MAX_ATTRS_DEPTH = 8
REQUIRED_STRINGS = ("item_id", "image", "category", "title")


@dataclass(frozen=True)
class CatalogItem:
    line: int
    item_id: str
    image: str  # as written in the catalog (relative path or URI)
    category: str
    title: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogProblem:
    line: int
    item_id: str | None
    message: str

    def __str__(self) -> str:
        who = f" ({self.item_id})" if self.item_id else ""
        return f"line {self.line}{who}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "item_id": self.item_id, "reason": self.message}


@dataclass
class Catalog:
    items: list[CatalogItem]
    errors: list[CatalogProblem]  # rows that could not be used
    duplicates: list[CatalogProblem]  # repeated item_ids: fatal for a rebuild
    rows: int  # non-blank lines seen

    @property
    def categories(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.category] = counts.get(item.category, 0) + 1
        return dict(sorted(counts.items()))


def shown_id(value: object) -> str | None:
    """A row's item_id as a problem may name it: None when it is not a string, escaped when it is not UTF-8."""
    if not isinstance(value, str):
        return None
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def bad_item_id(item_id: str) -> str | None:
    """Why `item_id` cannot be an item id (too long, control characters, not UTF-8); None when it can."""
    if len(item_id) > MAX_ID_LENGTH or any(ord(c) < 32 for c in item_id) or shown_id(item_id) != item_id:
        return f"item_id must be printable UTF-8 and at most {MAX_ID_LENGTH} chars"
    return None


def load_row(line_no: int, raw: str) -> dict[str, Any] | CatalogProblem:
    """One line as a JSON object, or what is wrong with it."""
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        return CatalogProblem(line_no, None, f"not valid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return CatalogProblem(line_no, None, "not usable JSON: nested too deep")
    if not isinstance(row, dict):
        return CatalogProblem(line_no, None, f"expected a JSON object, got {type(row).__name__}")
    return row


def _validate(line_no: int, raw: str) -> CatalogItem | CatalogProblem:
    row = load_row(line_no, raw)
    if isinstance(row, CatalogProblem):
        return row
    item_id = shown_id(row.get("item_id"))
    missing = [k for k in REQUIRED_STRINGS if k not in row]
    if missing:
        return CatalogProblem(line_no, item_id, f"missing field(s): {', '.join(missing)}")
    wrong = [k for k in REQUIRED_STRINGS if not isinstance(row[k], str)]
    if wrong:
        return CatalogProblem(line_no, item_id, f"field(s) must be strings: {', '.join(wrong)}")
    empty = [k for k in ("item_id", "image", "category") if not row[k].strip()]
    if empty:
        return CatalogProblem(line_no, item_id, f"field(s) must not be empty: {', '.join(empty)}")
    bad_id = bad_item_id(row["item_id"])
    if bad_id:
        return CatalogProblem(line_no, None, bad_id)
    if len(row["category"]) > MAX_CATEGORY_LENGTH:
        return CatalogProblem(line_no, item_id, f"category must be at most {MAX_CATEGORY_LENGTH} chars")
    attrs = row.get("attrs", {})
    if attrs is None:
        attrs = {}
    if not isinstance(attrs, dict):
        return CatalogProblem(line_no, item_id, f"attrs must be an object, got {type(attrs).__name__}")
    unservable = served_problem(row, attrs)
    if unservable:
        return CatalogProblem(line_no, item_id, unservable)
    return CatalogItem(line_no, row["item_id"], row["image"].strip(), row["category"], row["title"], attrs)


def _depth(value: object) -> int:
    """How deeply lists and objects nest in `value` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, depth + 1)
            if depth + 1 > MAX_ATTRS_DEPTH:
                break
            stack.extend((child, depth + 1) for child in children)
    return deepest


def served_problem(row: dict[str, Any], attrs: dict[str, Any]) -> str | None:
    """Why a row's strings and attrs cannot be part of an answer (checked with the services' own JSON
    serializer: integers past 64 bits, lone surrogates), or are too large or deep to; None when they can."""
    if len(row["title"]) > MAX_TITLE_LENGTH:
        return f"title must be at most {MAX_TITLE_LENGTH} chars"
    if _depth(attrs) > MAX_ATTRS_DEPTH:
        return f"attrs nest deeper than {MAX_ATTRS_DEPTH} levels"
    try:
        wire_json({key: row[key] for key in REQUIRED_STRINGS})
        size = len(wire_json(attrs))
    except TypeError as exc:  # orjson.JSONEncodeError
        return f"cannot be served as JSON: {exc}"
    if size > MAX_ATTRS_BYTES:
        return f"attrs must be at most {MAX_ATTRS_BYTES} bytes as JSON, got {size}"
    return None


def validate_row(line_no: int, raw: str) -> CatalogItem | CatalogProblem:
    """One catalog line, checked as a catalog checks it (what `imgsearch items apply` holds its upserts to)."""
    return _validate(line_no, raw)


def parse_catalog(text: str) -> Catalog:
    """Parse and validate JSON Lines text. Blank lines are ignored; line numbers are 1-based."""
    items: list[CatalogItem] = []
    errors: list[CatalogProblem] = []
    duplicates: list[CatalogProblem] = []
    first_line: dict[str, int] = {}
    rows = 0
    for line_no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        rows += 1
        result = _validate(line_no, raw)
        if isinstance(result, CatalogProblem):
            errors.append(result)
            continue
        if result.item_id in first_line:
            duplicates.append(
                CatalogProblem(
                    line_no, result.item_id, f"duplicate item_id (first on line {first_line[result.item_id]})"
                )
            )
            continue
        first_line[result.item_id] = line_no
        items.append(result)
    return Catalog(items=items, errors=errors, duplicates=duplicates, rows=rows)


def decode_catalog_bytes(data: bytes) -> str:
    """Catalogs are UTF-8; a BOM from spreadsheet exports is tolerated."""
    return data.decode("utf-8-sig")
