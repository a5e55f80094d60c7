"""Product catalog: JSON Lines, one item per line, validated line by line.

Every problem is collected with its line number instead of stopping at the first, so a catalog owner
can fix a whole file in one round trip. Deciding whether the problems are fatal is the job's policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_ID_LENGTH = 256
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


def load_row(line_no: int, raw: str) -> dict[str, Any] | CatalogProblem:
    """One line as a JSON object, or what is wrong with it."""
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        return CatalogProblem(line_no, None, f"not valid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(row, dict):
        return CatalogProblem(line_no, None, f"expected a JSON object, got {type(row).__name__}")
    return row


def _validate(line_no: int, raw: str) -> CatalogItem | CatalogProblem:
    row = load_row(line_no, raw)
    if isinstance(row, CatalogProblem):
        return row
    item_id = row.get("item_id") if isinstance(row.get("item_id"), str) else None
    missing = [k for k in REQUIRED_STRINGS if k not in row]
    if missing:
        return CatalogProblem(line_no, item_id, f"missing field(s): {', '.join(missing)}")
    wrong = [k for k in REQUIRED_STRINGS if not isinstance(row[k], str)]
    if wrong:
        return CatalogProblem(line_no, item_id, f"field(s) must be strings: {', '.join(wrong)}")
    empty = [k for k in ("item_id", "image", "category") if not row[k].strip()]
    if empty:
        return CatalogProblem(line_no, item_id, f"field(s) must not be empty: {', '.join(empty)}")
    if len(row["item_id"]) > MAX_ID_LENGTH or any(ord(c) < 32 for c in row["item_id"]):
        return CatalogProblem(line_no, None, f"item_id must be printable and at most {MAX_ID_LENGTH} chars")
    attrs = row.get("attrs", {})
    if attrs is None:
        attrs = {}
    if not isinstance(attrs, dict):
        return CatalogProblem(line_no, item_id, f"attrs must be an object, got {type(attrs).__name__}")
    return CatalogItem(line_no, row["item_id"], row["image"].strip(), row["category"], row["title"], attrs)


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
