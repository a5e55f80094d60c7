"""Retrieval evaluation with labelled queries: R@1, R@5, R@10 and P@10 by category (imgcore.retrieval).

A hit is a result in the query's category (categories compared by slug, so a folder named
"T-shirt-top" matches "T-shirt/top"). `evaluate_in_process` runs the embedder and an IndexReader;
`score` turns any list of result categories into a report, so `imgsearch eval --url` can measure the
served path (detector crop included) through a running gateway with the same numbers.
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
from imgcore.retrieval import Row, by_category, query_metrics
from imgcore.storage import as_uri, fetch_uri_bytes, resolve_uri

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class Query:
    image_uri: str
    category: str


@dataclass
class EvalReport:
    queries: int = 0
    failed: int = 0
    overall: dict[str, float] = field(default_factory=dict)
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "failed": self.failed, **self.overall, "per_category": self.per_category}


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
        queries = [Query(resolve_uri(base, it.image, allow_absolute=True), it.category) for it in catalog.items]
    if not queries:
        raise InvalidInput(f"no labelled queries found in {source}")
    return queries[:limit] if limit is not None else queries


def score(queries: Sequence[Query], results: Sequence[list[str] | None], k: int = 10) -> EvalReport:
    """`results[i]` is the result categories of query i, best first; None for a failed query."""
    rows: dict[str, list[Row]] = {}
    for query, cats in zip(queries, results, strict=True):
        if cats is not None:
            hits = [category_slug(c) == category_slug(query.category) for c in cats]
            rows.setdefault(query.category, []).append(query_metrics(hits, k))
    overall, per_category = by_category(rows)
    failed = sum(cats is None for cats in results)
    return EvalReport(queries=len(queries), failed=failed, overall=overall, per_category=per_category)


def evaluate_in_process(
    reader: IndexReader, embedder: BatchEmbedder, queries: Sequence[Query], *, k: int = 10, workers: int = 2
) -> EvalReport:
    items = [CatalogItem(i + 1, str(i), q.image_uri, q.category, "") for i, q in enumerate(queries)]
    opts = RebuildOptions(workers=workers, progress=False, allow_absolute_images=True)  # queries are absolute URIs
    embedded = embed_items(items, "file:///", embedder, opts)
    results: list[list[str] | None] = [None] * len(queries)
    hits_per_query = reader.query(embedded.vectors, k) if embedded.items else []
    for item, hits in zip(embedded.items, hits_per_query, strict=True):
        results[int(item.item_id)] = [h.category for h in hits]
    return score(queries, results, k)


def format_report(report: EvalReport, title: str) -> str:
    keys = [key for key in next(iter(report.per_category.values()), {}) if key != "queries"]
    lines = [f"{title}: {report.queries} queries, {report.failed} failed"]
    lines.append(f"{'category':<16}{'n':>6}" + "".join(f"{key:>9}" for key in keys))
    for cat, vals in report.per_category.items():
        lines.append(f"{cat[:15]:<16}{int(vals['queries']):>6}" + "".join(f"{vals[key]:>9.3f}" for key in keys))
    n = report.queries - report.failed
    lines.append(f"{'ALL':<16}{n:>6}" + "".join(f"{report.overall.get(key, 0.0):>9.3f}" for key in keys))
    return "\n".join(lines)
