"""The index rebuild job: catalog -> images -> embeddings -> annoy forest -> gate -> publish.

It refuses, and publishes nothing (CURRENT untouched), when the catalog is empty or has duplicate
ids, when more than 1 % of rows cannot be used, or when the quality gate fails. The embedding phase
(decode threads, batches, the optional embedding cache) lives in ann_index.embedding.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ann_index.builder import IndexItem, build_index
from ann_index.catalog import Catalog, CatalogItem, decode_catalog_bytes, parse_catalog
from ann_index.common import MANIFEST_NAME, METRIC, VECTORS_NAME
from ann_index.embedding import BatchEmbedder, RebuildOptions, embed_catalog, open_cache
from ann_index.gate import run_gate
from ann_index.manifest import FORMAT, EmbedderInfo, embedder_section, make_version, write_manifest
from ann_index.publish import publish_version
from imgcore.errors import ImgSearchError, InvalidInput
from imgcore.storage import ObjectStore, fetch_uri_bytes, open_store, resolve_uri

log = logging.getLogger(__name__)
MAX_LISTED_SKIPS = 100


class RebuildRefused(ImgSearchError):
    """The job decided not to publish; CURRENT was not touched."""

    status = 422
    reason = "rebuild_refused"


def as_uri(uri_or_path: str) -> str:
    """A path or URI -> URI (a local path becomes an absolute file:// URI)."""
    return uri_or_path if "://" in uri_or_path else Path(uri_or_path).resolve().as_uri()


def read_catalog(catalog_uri: str, s3_endpoint_url: str | None = None) -> tuple[Catalog, str, str]:
    """Read and validate a catalog; also return the folder its relative image paths hang off and the
    sha256 of the catalog's bytes (what a sharded run is named after)."""
    uri = as_uri(catalog_uri)
    data = fetch_uri_bytes(uri, s3_endpoint_url=s3_endpoint_url)
    catalog = parse_catalog(decode_catalog_bytes(data))
    return catalog, uri.rsplit("/", 1)[0] + "/", hashlib.sha256(data).hexdigest()


def load_catalog(catalog_uri: str, s3_endpoint_url: str | None = None) -> tuple[Catalog, str]:
    """Read and validate a catalog; also return the folder its relative image paths hang off."""
    catalog, base_uri, _ = read_catalog(catalog_uri, s3_endpoint_url)
    return catalog, base_uri


def check_catalog(catalog: Catalog, max_fail_fraction: float) -> None:
    """Refuse an empty catalog, duplicate ids, or more invalid rows than the failure budget allows."""
    if not catalog.items and not catalog.errors and not catalog.duplicates:
        raise RebuildRefused("catalog is empty: nothing to index")
    if catalog.duplicates:
        shown = "; ".join(str(d) for d in catalog.duplicates[:10])
        raise RebuildRefused(f"catalog has {len(catalog.duplicates)} duplicate item_id(s): {shown}")
    if len(catalog.errors) > max_fail_fraction * catalog.rows:
        shown = "; ".join(str(e) for e in catalog.errors[:10])
        raise RebuildRefused(f"{len(catalog.errors)} of {catalog.rows} catalog rows are invalid: {shown}")


def build_version(
    vectors: np.ndarray,
    items: list[IndexItem],
    out_dir: Path,
    embedder: EmbedderInfo,
    opts: RebuildOptions,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build, gate and write manifest.json into `out_dir`; RebuildRefused when the gate fails."""
    t0 = time.monotonic()
    built = build_index(vectors, items, out_dir, n_trees=opts.n_trees, seed=opts.seed, workers=opts.workers)
    t_build = time.monotonic()
    gate = run_gate(
        out_dir,
        np.asarray(np.load(out_dir / VECTORS_NAME, mmap_mode="r")),
        built.categories,
        n_trees=opts.n_trees,
        recall_target=opts.recall_target,
        n_queries=opts.gate_queries,
        min_category_precision=opts.min_category_precision,
        seed=opts.seed,
        workers=opts.workers,
    )
    if not gate.passed:
        raise RebuildRefused("quality gate failed: " + "; ".join(gate.reasons))
    now = datetime.now(UTC)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": make_version(built.files, embedder.sha256, now),
        "created_at": now.isoformat(timespec="seconds"),
        "embedder": embedder_section(embedder),
        "metric": METRIC,
        "count": built.count,
        "categories": {name: info.to_dict() for name, info in built.categories.items()},
        "n_trees": built.n_trees,
        "search_k": gate.search_k,
        "seed": built.seed,
        "files": built.files,
        "quality": gate.to_dict(),
        "skipped": {"count": 0, "rows": []},
        "timings_s": {"build": round(t_build - t0, 2), "gate": round(time.monotonic() - t_build, 2)},
    }
    for key, value in (extra or {}).items():
        manifest[key] = {**manifest[key], **value} if isinstance(manifest.get(key), dict) else value
    write_manifest(out_dir / MANIFEST_NAME, manifest)
    return manifest


def check_skipped(skipped: list[dict[str, Any]], rows: int, max_fail_fraction: float) -> None:
    """Refuse when more rows were unusable (invalid or not embedded) than the failure budget allows."""
    if len(skipped) > max_fail_fraction * rows:
        shown = "; ".join(f"line {s['line']} ({s['item_id']}): {s['reason']}" for s in skipped[:10])
        raise RebuildRefused(f"{len(skipped)} of {rows} rows failed (limit {max_fail_fraction:.0%}): {shown}")


def build_and_publish(
    store: ObjectStore,
    items: list[CatalogItem],
    vectors: np.ndarray,
    base_uri: str,
    embedder: EmbedderInfo,
    opts: RebuildOptions,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Build the embedded `items` (vectors in the same order) in a temp folder, gate, publish, move CURRENT."""
    if vectors.shape[1] != embedder.dim:
        raise InvalidInput(f"embedder returned dim {vectors.shape[1]}, its card says {embedder.dim}")
    index_items = [
        IndexItem(it.item_id, it.category, it.title, resolve_uri(base_uri, it.image), it.attrs) for it in items
    ]
    work = Path(tempfile.mkdtemp(prefix="imgsearch-index-", dir=opts.work_dir))
    try:
        manifest = build_version(vectors, index_items, work, embedder, opts, extra)
        publish_version(store, work, keep=opts.keep)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def rebuild(
    catalog_uri: str, out_uri: str, embedder: BatchEmbedder, opts: RebuildOptions | None = None
) -> dict[str, Any]:
    """Run the whole job; return the published manifest. Raises RebuildRefused to refuse."""
    opts = opts or RebuildOptions()
    t0 = time.monotonic()
    catalog, base_uri = load_catalog(catalog_uri, opts.s3_endpoint_url)
    check_catalog(catalog, opts.max_fail_fraction)
    with open_store(as_uri(out_uri), s3_endpoint_url=opts.s3_endpoint_url) as store:  # fail early on a bad --out
        log.info("catalog %s: %d items in %d categories", catalog_uri, len(catalog.items), len(catalog.categories))
        with open_cache(opts, embedder) as cache:
            done, vectors, skipped = embed_catalog(catalog.items, base_uri, embedder, opts, cache)
        t_embed = time.monotonic()
        skipped = [e.to_dict() for e in catalog.errors] + skipped
        check_skipped(skipped, catalog.rows, opts.max_fail_fraction)
        items = [catalog.items[p] for p in done]
        extra = {
            "skipped": {"count": len(skipped), "rows": skipped[:MAX_LISTED_SKIPS]},
            "catalog": {"uri": as_uri(catalog_uri), "rows": catalog.rows},
            "timings_s": {
                "embed": round(t_embed - t0, 2),
                "items_per_s": round(len(items) / max(t_embed - t0, 1e-9), 1),
            },
        }
        if cache is not None:
            extra["embedding_cache"] = cache.stats()
        return build_and_publish(store, items, vectors, base_uri, embedder, opts, extra)
