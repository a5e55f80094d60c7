"""A changes file from the catalog system: JSON Lines, each an upsert (a catalog row plus `"op": "upsert"`)
or a delete (`{"op": "delete", "item_id": ...}`).

Upserts are held to the catalog's own rules (`ann_index.catalog.rows.validate_row`), so an item that a rebuild
would refuse is refused here too. One op per item per file: two for the same item would depend on an order
nobody may have meant. Every problem is reported with its line, as a catalog's are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ann_index.catalog.rows import MAX_ID_LENGTH, CatalogItem, CatalogProblem, load_row, validate_row


@dataclass
class ChangeFile:
    upserts: list[CatalogItem] = field(default_factory=list)
    deletes: list[tuple[int, str]] = field(default_factory=list)  # (line, item_id)
    problems: list[CatalogProblem] = field(default_factory=list)
    rows: int = 0


def _delete_id(line_no: int, row: dict[str, object]) -> str | CatalogProblem:
    item_id = row.get("item_id")
    if not isinstance(item_id, str) or not item_id.strip():
        return CatalogProblem(line_no, None, "a delete needs a non-empty string item_id")
    if len(item_id) > MAX_ID_LENGTH or any(ord(c) < 32 for c in item_id):
        return CatalogProblem(line_no, None, f"item_id must be printable and at most {MAX_ID_LENGTH} chars")
    return item_id


def _parse_line(line_no: int, raw: str) -> CatalogItem | tuple[int, str] | CatalogProblem:
    row = load_row(line_no, raw)
    if isinstance(row, CatalogProblem):
        return row
    op = row.get("op")
    if op == "upsert":
        return validate_row(line_no, raw)
    if op == "delete":
        found = _delete_id(line_no, row)
        return found if isinstance(found, CatalogProblem) else (line_no, found)
    item_id = row.get("item_id") if isinstance(row.get("item_id"), str) else None
    return CatalogProblem(line_no, item_id, f'"op" must be "upsert" or "delete", got {op!r}')


def parse_changes(text: str) -> ChangeFile:
    """Parse and validate a changes file; blank lines are ignored, line numbers are 1-based."""
    out = ChangeFile()
    first_line: dict[str, int] = {}
    for line_no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        out.rows += 1
        parsed = _parse_line(line_no, raw)
        if isinstance(parsed, CatalogProblem):
            out.problems.append(parsed)
            continue
        item_id = parsed.item_id if isinstance(parsed, CatalogItem) else parsed[1]
        if item_id in first_line:
            msg = f"item_id appears twice in one batch (first on line {first_line[item_id]})"
            out.problems.append(CatalogProblem(line_no, item_id, msg))
            continue
        first_line[item_id] = line_no
        if isinstance(parsed, CatalogItem):
            out.upserts.append(parsed)
        else:
            out.deletes.append(parsed)
    return out
