"""A changes file from the catalog system: JSON Lines, each an upsert (a catalog row plus `"op": "upsert"`)
or a delete (`{"op": "delete", "item_id": ...}`).

Upserts are held to the catalog's own rules (`ann_index.catalog.rows.validate_row`), so an item that a rebuild
would refuse is refused here too. One op per item per file: two for the same item would depend on an order
nobody may have meant. Every problem is reported with its line, as a catalog's are. An upserted id must be
reachable as one URL path segment (not `.`, `..` or holding `/`), and a file holds at most `MAX_BATCH_ROWS`
rows (each replica keeps what a batch hides in memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ann_index.catalog.rows import CatalogItem, CatalogProblem, bad_item_id, load_row, shown_id, validate_row
from ann_index.version.changes import MAX_BATCH_ROWS


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
    bad = bad_item_id(item_id)
    return CatalogProblem(line_no, None, bad) if bad else item_id


def _parse_line(line_no: int, raw: str) -> CatalogItem | tuple[int, str] | CatalogProblem:
    row = load_row(line_no, raw)
    if isinstance(row, CatalogProblem):
        return row
    op = row.get("op")
    if op == "upsert":
        item = validate_row(line_no, raw)
        if isinstance(item, CatalogItem) and (item.item_id in (".", "..") or "/" in item.item_id):
            return CatalogProblem(line_no, item.item_id, "item_id must not be '.', '..' or hold '/': no URL reaches it")
        return item
    if op == "delete":
        found = _delete_id(line_no, row)
        return found if isinstance(found, CatalogProblem) else (line_no, found)
    return CatalogProblem(line_no, shown_id(row.get("item_id")), f'"op" must be "upsert" or "delete", got {op!r}')


def parse_changes(text: str) -> ChangeFile:
    """Parse and validate a changes file; blank lines are ignored, line numbers are 1-based."""
    out = ChangeFile()
    first_line: dict[str, int] = {}
    for line_no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        out.rows += 1
        if out.rows > MAX_BATCH_ROWS:
            out.problems.append(CatalogProblem(line_no, None, f"more than {MAX_BATCH_ROWS} rows: split the file"))
            break
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
