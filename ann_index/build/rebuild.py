"""The index rebuild job: catalog -> images -> embeddings -> annoy forest -> gate -> publish.

One pipeline, whole or sharded: `load_catalog` (read and check), `ann_index.build.embedding.embed_items` (the
rows to embed: all of them here, one shard's in `shard_job`), `publish_rows` (failure budget, manifest,
build, gate, publish). `rebuild` runs it in one process; `shard_job` runs the same steps split across pods,
so an unsharded rebuild is the one-shard case and both publish the same index.

It refuses, and publishes nothing (CURRENT untouched), when the catalog is empty or has duplicate
ids, when more than 1 % of rows cannot be used, or when the quality gate fails.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ann_index.build.carry_over import CarryOver
from ann_index.build.embedding import BatchEmbedder, RebuildOptions, embed_items
from ann_index.build.forest import build_index
from ann_index.build.gate import run_gate
from ann_index.build.partitioned import build_partitioned_version, manifest_common, thumbnails_section
from ann_index.build.self_match import Probes, probe
from ann_index.catalog.load import LoadedCatalog, RebuildRefused, check_budget, load_catalog
from ann_index.catalog.rows import CatalogItem
from ann_index.files import MANIFEST_NAME, VECTORS_NAME
from ann_index.items import IndexItem
from ann_index.thumbs import ThumbPack
from ann_index.version.duplicates import REPORT_NAME, find_duplicates, print_matrix, report_bytes
from ann_index.version.manifest import EmbedderInfo, file_sizes, make_version, merge_sections, write_manifest
from ann_index.version.publish import publish_version, version_key
from imgcore.fingerprint import DUPLICATE_PRINT_SCORE
from imgcore.storage import ObjectStore, as_uri, open_store, resolve_uri

__all__ = ["RebuildOptions", "RebuildRefused", "build_version", "load_catalog", "publish_rows", "rebuild"]

log = logging.getLogger(__name__)
MAX_LISTED_SKIPS = 100


def publish_rows(
    store: ObjectStore,
    loaded: LoadedCatalog,
    items: list[CatalogItem],
    vectors: np.ndarray,
    failed: list[dict[str, Any]],
    embedder: EmbedderInfo,
    opts: RebuildOptions,
    extra: dict[str, Any],
    thumbs: ThumbPack | None = None,
    probes: Probes | None = None,
) -> dict[str, Any]:
    """Build the embedded `items` (vectors and `thumbs` in the same order) in a temp folder, gate, publish.

    `failed` are the rows that could not be embedded; with the catalog's invalid rows they are the
    manifest's "skipped", and over the failure budget they refuse the build. `probes`: the gate's self-match
    sample of `items` (none: not measured).
    """
    skipped = check_budget(loaded.catalog, failed, opts.max_fail_fraction)
    extra = {
        "skipped": {"count": len(skipped), "rows": skipped[:MAX_LISTED_SKIPS]},
        "catalog": {"uri": loaded.uri, "rows": loaded.catalog.rows},
        "crop": opts.crop,  # how catalog images were embedded (RebuildOptions.crop)
        **({"kinds": loaded.kinds} if loaded.kinds else {}),
        **extra,
    }
    absolute = opts.allow_absolute_images
    index_items = [
        IndexItem(
            it.item_id, it.category, it.title, resolve_uri(loaded.base_uri, it.image, allow_absolute=absolute), it.attrs
        )
        for it in items
    ]
    report = _duplicates(thumbs, index_items, extra) if opts.duplicates else None
    work = Path(tempfile.mkdtemp(prefix="imgsearch-index-", dir=opts.work_dir))
    try:
        manifest = build_version(vectors, index_items, work, embedder, opts, extra, thumbs, probes)
        if report is not None:  # before CURRENT moves, so a served version never lacks the report it names
            store.put_bytes(version_key(manifest["version"], REPORT_NAME), report)
        since = opts.changes_since if opts.changes_since is not None else loaded.read_at
        carry = CarryOver(store, manifest["version"], embedder, since, opts)  # changes newer than the snapshot
        carry.copy()
        publish_version(store, work, keep=opts.keep)
        carry.copy()
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _duplicates(thumbs: ThumbPack | None, items: list[IndexItem], extra: dict[str, Any]) -> bytes | None:
    """The near-duplicate listings report of the rows being published (fingerprints of their thumbnails); its
    summary goes into the manifest. None without thumbnails."""
    if thumbs is None or len(thumbs) != len(items):
        log.warning("no near-duplicate report: the rows have no thumbnails to fingerprint")
        return None
    t0 = time.monotonic()
    pairs = find_duplicates(print_matrix([thumbs[i] for i in range(len(thumbs))]), items)
    seconds = round(time.monotonic() - t0, 2)
    extra["duplicates"] = {"pairs": len(pairs), "threshold": DUPLICATE_PRINT_SCORE, "report": REPORT_NAME, "s": seconds}
    log.info(
        "%d near-duplicate pair(s) of different products among %d images (%.1f s)", len(pairs), len(items), seconds
    )
    return report_bytes(pairs)


def build_version(
    vectors: np.ndarray,
    items: list[IndexItem],
    out_dir: Path,
    embedder: EmbedderInfo,
    opts: RebuildOptions,
    extra: dict[str, Any] | None = None,
    thumbs: ThumbPack | None = None,
    probes: Probes | None = None,
) -> dict[str, Any]:
    """Build, gate and write manifest.json into `out_dir`; RebuildRefused when the gate fails."""
    if opts.partitions > 1:  # issue 16: N part folders under one version
        partitioned, gate_result = build_partitioned_version(
            out_dir, vectors, items, embedder=embedder, opts=opts, extra=extra, thumbs=thumbs, probes=probes
        )
        if partitioned is None:
            raise RebuildRefused("quality gate failed: " + "; ".join(gate_result.reasons))
        return partitioned
    t0 = time.monotonic()
    built = build_index(
        vectors, items, out_dir, n_trees=opts.n_trees, seed=opts.seed, workers=opts.workers, thumbs=thumbs
    )
    t_build = time.monotonic()
    vecs = np.asarray(np.load(out_dir / VECTORS_NAME, mmap_mode="r"))
    found = (probes, built.order) if probes is not None else None
    gate = run_gate(out_dir, vecs, built.categories, probes=found, **opts.gate_options())
    if not gate.passed:
        raise RebuildRefused("quality gate failed: " + "; ".join(gate.reasons))
    now = datetime.now(UTC)
    timings = {"build": round(t_build - t0, 2), "gate": round(time.monotonic() - t_build, 2)}
    manifest = manifest_common(embedder, gate, n_trees=built.n_trees, seed=built.seed, now=now, timings=timings)
    manifest.update(
        version=make_version(built.files, embedder.sha256, now),
        count=built.count,
        categories={name: info.to_dict() for name, info in built.categories.items()},
        files=built.files,
        sizes=file_sizes(out_dir, built.files),
    )
    if thumbs is not None:
        manifest["thumbnails"] = thumbnails_section(thumbs)
    merge_sections(manifest, extra or {})
    write_manifest(out_dir / MANIFEST_NAME, manifest)
    return manifest


def rebuild(
    catalog_uri: str, out_uri: str, embedder: BatchEmbedder, opts: RebuildOptions | None = None
) -> dict[str, Any]:
    """Run the whole job; return the published manifest. Raises RebuildRefused to refuse."""
    opts = opts or RebuildOptions()
    t0 = time.monotonic()
    loaded = load_catalog(catalog_uri, opts)
    catalog = loaded.catalog
    with open_store(as_uri(out_uri), s3_endpoint_url=opts.s3_endpoint_url) as store:  # fail early on a bad --out
        log.info("catalog %s: %d items in %d categories", catalog_uri, len(catalog.items), len(catalog.categories))
        embedded = embed_items(catalog.items, loaded.base_uri, embedder, opts)
        elapsed = time.monotonic() - t0
        probes = probe(embedded.items, loaded.base_uri, embedder, opts)  # the gate's self-match sample
        extra: dict[str, Any] = {
            "timings_s": {"embed": round(elapsed, 2), "items_per_s": round(len(embedded.items) / max(elapsed, 1e-9), 1)}
        }
        if embedded.cache_stats is not None:
            extra["embedding_cache"] = embedded.cache_stats
        return publish_rows(
            store, loaded, embedded.items, embedded.vectors, embedded.skipped, embedder, opts, extra, embedded.thumbs,
            probes,
        )  # fmt: skip
