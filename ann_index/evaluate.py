"""Retrieval evaluation with labelled queries: R@1, R@5, R@10 and P@10 by category.

A hit is a result in the query's category (categories compared by slug, so a folder named
"T-shirt-top" matches "T-shirt/top"). Runs in-process (embedder + IndexReader) or through a running
gateway (POST /v1/search), so the served path, detector crop included, can be measured too.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ann_index.catalog import CatalogItem, decode_catalog_bytes, parse_catalog
from ann_index.common import category_slug
from ann_index.embedding import BatchEmbedder, RebuildOptions, embed_catalog
from ann_index.reader import IndexReader
from imgcore.errors import InvalidInput
from imgcore.storage import fetch_uri_bytes, resolve_uri

KS = (1, 5, 10)
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
    path = Path(source)
    if path.is_dir() and (path / "catalog.jsonl").is_file():
        path = path / "catalog.jsonl"
    if path.is_dir():
        queries = [
            Query(img.resolve().as_uri(), sub.name)
            for sub in sorted(p for p in path.iterdir() if p.is_dir())
            for img in sorted(sub.iterdir())
            if img.suffix.lower() in IMAGE_SUFFIXES
        ]
    else:
        uri = source if "://" in source else path.resolve().as_uri()
        catalog = parse_catalog(decode_catalog_bytes(fetch_uri_bytes(uri)))
        if catalog.errors:
            raise InvalidInput(f"query file has invalid rows: {'; '.join(map(str, catalog.errors[:5]))}")
        base = uri.rsplit("/", 1)[0] + "/"
        queries = [Query(resolve_uri(base, it.image), it.category) for it in catalog.items]
    if not queries:
        raise InvalidInput(f"no labelled queries found in {source}")
    return queries[:limit] if limit is not None else queries


def score(queries: Sequence[Query], results: Sequence[list[str] | None], k: int = 10) -> EvalReport:
    """`results[i]` is the result categories of query i, best first; None for a failed query."""
    rows: dict[str, list[dict[str, float]]] = {}
    failed = 0
    for query, cats in zip(queries, results, strict=True):
        if cats is None:
            failed += 1
            continue
        same = [category_slug(c) == category_slug(query.category) for c in cats[:k]]
        row = {f"r_at_{n}": float(any(same[:n])) for n in KS if n <= k}
        row[f"p_at_{k}"] = sum(same) / k
        rows.setdefault(query.category, []).append(row)

    def mean(items: list[dict[str, float]]) -> dict[str, float]:
        return {key: round(sum(r[key] for r in items) / len(items), 4) for key in items[0]} if items else {}

    everything = [r for rs in rows.values() for r in rs]
    return EvalReport(
        queries=len(queries),
        failed=failed,
        overall=mean(everything),
        per_category={cat: {"queries": len(rs), **mean(rs)} for cat, rs in sorted(rows.items())},
    )


def evaluate_in_process(
    reader: IndexReader, embedder: BatchEmbedder, queries: Sequence[Query], *, k: int = 10, workers: int = 2
) -> EvalReport:
    items = [CatalogItem(i + 1, str(i), q.image_uri, q.category, "") for i, q in enumerate(queries)]
    done, vectors, _ = embed_catalog(items, "file:///", embedder, RebuildOptions(workers=workers, progress=False))
    results: list[list[str] | None] = [None] * len(queries)
    for pos, hits in zip(done, reader.query(vectors, k) if len(done) else [], strict=True):
        results[pos] = [h.category for h in hits]
    return score(queries, results, k)


def evaluate_via_gateway(
    url: str,
    queries: Sequence[Query],
    *,
    k: int = 10,
    concurrency: int = 4,
    timeout_s: float = 30.0,
    client_factory: Callable[[], httpx.Client] | None = None,
) -> EvalReport:
    """POST each query image to `<url>/v1/search?k=<k>`; categories from items[0].results."""
    client = client_factory() if client_factory else httpx.Client(timeout=timeout_s)

    def one(query: Query) -> list[str] | None:
        data = fetch_uri_bytes(query.image_uri)
        name = query.image_uri.rsplit("/", 1)[-1]
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        try:
            resp = client.post(f"{url.rstrip('/')}/v1/search", params={"k": k}, files={"image": (name, data, mime)})
            resp.raise_for_status()
            items = resp.json().get("items") or []
        except (httpx.HTTPError, ValueError):
            return None
        return [str(r.get("category")) for r in items[0].get("results", [])] if items else []

    with client, ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, queries))
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
