"""Retrieval evaluation with labelled queries: R@1, R@5, R@10 and P@10 by category, item R@1/R@10 and
self-match@1 (imgcore.retrieval).

A category hit is a result in the query's category (categories compared by slug, so a folder named
"T-shirt-top" matches "T-shirt/top"). A query row of a catalog-format file may name, in its attrs, the items
it shows (`expect`: the item, its product's other rows, exact duplicate images) and its `style`: "shop" (a
shopper's photo of the item: item R@1/R@10, and category metrics), "self" (the item's own catalog image:
self-match@1 only) or "labelled" (the default: category metrics only); `embedder.training.item_queries` writes
such files. `evaluate_in_process` runs the embedder (the search path's preprocessing of a whole photo) and an
IndexReader; `score` turns any list of result (category, item id) pairs into a report, so `imgsearch eval
--url` can measure the served path (detector crop included) through a running gateway with the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ann_index.build.embedding import BatchEmbedder, RebuildOptions, embed_items
from ann_index.catalog.rows import CatalogItem, decode_catalog_bytes, parse_catalog
from ann_index.files import category_slug
from ann_index.serving.reader import IndexReader
from imgcore.errors import InvalidInput
from imgcore.retrieval import Row, by_category, item_row, mean_rows, query_metrics
from imgcore.storage import as_uri, fetch_uri_bytes, resolve_uri

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


STYLES = ("labelled", "shop", "self")
Hit = tuple[str, str]  # (category, item id) of one result


@dataclass(frozen=True)
class Query:
    image_uri: str
    category: str
    expect: frozenset[str] = frozenset()  # item ids that count as finding the item shown
    style: str = "labelled"


@dataclass
class EvalReport:
    queries: int = 0
    failed: int = 0
    overall: dict[str, float] = field(default_factory=dict)
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    items: dict[str, float] = field(default_factory=dict)  # item_r_at_1/10, self_match_at_1 and their counts

    def to_dict(self) -> dict[str, Any]:
        head = {"queries": self.queries, "failed": self.failed, **self.overall, **self.items}
        return {**head, "per_category": self.per_category}


def load_queries(source: str, limit: int | None = None) -> list[Query]:
    """A catalog-format JSONL file, a folder holding catalog.jsonl, or a folder of <category>/ image folders."""
    in_folder = Path(source) / "catalog.jsonl"
    path = in_folder if in_folder.is_file() else Path(source)
    if path.is_dir():
        queries = [
            Query(img.resolve().as_uri(), sub.name)
            for sub in sorted(p for p in path.iterdir() if p.is_dir())
            for img in sorted(sub.iterdir())
            if img.suffix.lower() in IMAGE_SUFFIXES
        ]
    else:
        uri = as_uri(str(path) if path == in_folder else source)  # str(Path) would mangle "s3://"
        catalog = parse_catalog(decode_catalog_bytes(fetch_uri_bytes(uri)))
        if catalog.errors:
            raise InvalidInput(f"query file has invalid rows: {'; '.join(map(str, catalog.errors[:5]))}")
        base = uri.rsplit("/", 1)[0] + "/"
        # The evaluator's own query file on its own machine: absolute image paths are its owner's choice.
        queries = [_query(resolve_uri(base, it.image, allow_absolute=True), it) for it in catalog.items]
    if not queries:
        raise InvalidInput(f"no labelled queries found in {source}")
    return queries[:limit] if limit is not None else queries


def _query(image_uri: str, row: CatalogItem) -> Query:
    expect, style = row.attrs.get("expect", []), str(row.attrs.get("style", "labelled"))
    if not isinstance(expect, list) or style not in STYLES or (style != "labelled" and not expect):
        raise InvalidInput(f"query line {row.line}: attrs.style must be one of {STYLES}, with attrs.expect item ids")
    return Query(image_uri, row.category, frozenset(map(str, expect)), style)


def score(queries: Sequence[Query], results: Sequence[list[Hit] | None], k: int = 10) -> EvalReport:
    """`results[i]` is the results of query i, best first, as (category, item id); None for a failed query."""
    rows: dict[str, list[Row]] = {}
    shop: list[Row] = []
    self_rows: list[Row] = []
    for query, hits in zip(queries, results, strict=True):
        if hits is None:
            continue
        found = [item_id in query.expect for _, item_id in hits]
        if query.style == "self":  # its own catalog image: only whether it comes back first says anything
            self_rows.append(item_row(found, (1,), prefix="self_"))
            continue
        if query.style == "shop":
            shop.append(item_row(found))
        in_category = [category_slug(c) == category_slug(query.category) for c, _ in hits]
        rows.setdefault(query.category, []).append(query_metrics(in_category, k))
    overall, per_category = by_category(rows)
    items = {**mean_rows(shop), "item_queries": len(shop)} if shop else {}
    if self_rows:
        items.update(self_match_at_1=mean_rows(self_rows)["self_r_at_1"], self_queries=len(self_rows))
    failed = sum(hits is None for hits in results)
    return EvalReport(queries=len(queries), failed=failed, overall=overall, per_category=per_category, items=items)


def evaluate_in_process(
    reader: IndexReader, embedder: BatchEmbedder, queries: Sequence[Query], *, k: int = 10, workers: int = 2
) -> EvalReport:
    items = [CatalogItem(i + 1, str(i), q.image_uri, q.category, "") for i, q in enumerate(queries)]
    opts = RebuildOptions(workers=workers, progress=False, allow_absolute_images=True)  # queries are absolute URIs
    embedded = embed_items(items, "file:///", embedder, opts)
    results: list[list[Hit] | None] = [None] * len(queries)
    hits_per_query = reader.query(embedded.vectors, k) if embedded.items else []
    for item, hits in zip(embedded.items, hits_per_query, strict=True):
        results[int(item.item_id)] = [(h.category, h.item_id) for h in hits]
    return score(queries, results, k)


def format_report(report: EvalReport, title: str) -> str:
    keys = [key for key in next(iter(report.per_category.values()), {}) if key != "queries"]
    lines = [f"{title}: {report.queries} queries, {report.failed} failed"]
    lines.append(f"{'category':<16}{'n':>6}" + "".join(f"{key:>9}" for key in keys))
    for cat, vals in report.per_category.items():
        lines.append(f"{cat[:15]:<16}{int(vals['queries']):>6}" + "".join(f"{vals[key]:>9.3f}" for key in keys))
    n = report.queries - report.failed
    if report.overall:
        lines.append(f"{'ALL':<16}{n:>6}" + "".join(f"{report.overall.get(key, 0.0):>9.3f}" for key in keys))
    items = report.items
    if "item_queries" in items:
        lines.append(f"item (shop photos, {int(items['item_queries'])}): R@1 {items['item_r_at_1']:.3f}  "
                     f"R@10 {items['item_r_at_10']:.3f}")  # fmt: skip
    if "self_queries" in items:
        lines.append(f"self-match@1 (catalog images, {int(items['self_queries'])}): {items['self_match_at_1']:.3f}")
    return "\n".join(lines)
