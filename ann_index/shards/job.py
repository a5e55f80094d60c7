"""The two steps of a sharded rebuild (`imgsearch index build --shard i/N`, then `--merge-shards N`).

Step 1, one pod per shard: embed only the catalog rows of shard i and write `<out>/shards/<run>/<i>.npz`;
a shard already complete for the same run is not embedded again (a retried or re-run pod). Step 2, once:
merge the N shards in catalog order, refusing an incomplete or inconsistent set, then the same
`publish_rows` (failure budget -> build -> quality gate -> publish -> CURRENT) as the single-process
job (ann_index.build.rebuild), and delete the run's shard files. Both steps compute the run id from the
catalog bytes, the embedder and N, so they agree without being told; a catalog changed in between makes
the merge find no shards and refuse.

A sharded build publishes the same index as `rebuild()` would: the vectors are merged into catalog order
and the embedder embeds each image independently of its batch neighbours (tests/ann_index/test_shards_cli.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from ann_index.build.embedding import BatchEmbedder, RebuildOptions, embed_items
from ann_index.build.rebuild import publish_rows
from ann_index.build.self_match import probe
from ann_index.catalog.load import RebuildRefused, check_budget, load_catalog
from ann_index.shards.files import shard_is_done, write_shard
from ann_index.shards.merge import merge_shards
from ann_index.shards.spec import SHARD_DIR, ShardError, ShardSpec, run_id, select_rows, shard_key
from imgcore.errors import StoreError
from imgcore.storage import as_uri, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardResult:
    run: str
    spec: ShardSpec
    key: str  # shards/<run>/<i>.npz, relative to the output root
    embedded: int
    skipped: int
    reused: bool  # the shard was already complete: nothing embedded


def shard_run_id(catalog_sha256: str, embedder_sha256: str, count: int, opts: RebuildOptions) -> str:
    """The run id both steps derive; the crop mode changes the vectors and allowing absolute image URIs
    the rows embedded, so both are part of the id."""
    salt = "" if opts.crop == "full" else f"crop={opts.crop}"
    if opts.allow_absolute_images:
        salt += ",absolute-images"
    return run_id(catalog_sha256, embedder_sha256, count, salt=salt)


def embed_shard(
    catalog_uri: str, out_uri: str, embedder: BatchEmbedder, spec: ShardSpec, opts: RebuildOptions | None = None
) -> ShardResult:
    """Step 1: embed the rows of shard `spec` and write its file; publish nothing.

    Refused (RebuildRefused, nothing written) for a catalog the merge would refuse, and when this shard
    alone failed on more rows than the whole catalog's failure budget (a store outage, say): the merge
    would refuse anyway, and writing the shard would make a retry skip it.
    """
    opts = opts or RebuildOptions()
    loaded = load_catalog(catalog_uri, opts)
    run = shard_run_id(loaded.sha256, embedder.sha256, spec.count, opts)
    key = shard_key(run, spec.index)
    with open_store(as_uri(out_uri), s3_endpoint_url=opts.s3_endpoint_url) as store:
        try:
            if shard_is_done(store, run, spec, embedder_sha256=embedder.sha256, need_thumbs=True):
                log.info("shard %s of run %s is already complete: %s", spec, run, key)
                return ShardResult(run, spec, key, 0, 0, reused=True)
        except ShardError as exc:
            raise RebuildRefused(f"shard folder of run {run}: {exc}") from exc
        rows = select_rows(loaded.catalog.items, spec)
        log.info("shard %s of run %s: %d of %d catalog items", spec, run, len(rows), len(loaded.catalog.items))
        embedded = embed_items(rows, loaded.base_uri, embedder, opts)
        check_budget(loaded.catalog, embedded.skipped, opts.max_fail_fraction, where=f"shard {spec}: ")
        write_shard(
            store,
            run,
            spec,
            [item.item_id for item in embedded.items],
            embedded.vectors,
            skipped=[s["item_id"] for s in embedded.skipped],
            skip_reasons=[s["reason"] for s in embedded.skipped],
            embedder_sha256=embedder.sha256,
            thumbs=embedded.thumbs,
        )
    return ShardResult(run, spec, key, len(embedded.items), len(embedded.skipped), reused=False)


def merge_and_publish(
    catalog_uri: str, out_uri: str, embedder: BatchEmbedder, count: int, opts: RebuildOptions | None = None
) -> dict[str, Any]:
    """Step 2: merge the `count` shards of this catalog's run, then build, gate and publish.

    Raises RebuildRefused (CURRENT untouched) for a missing, extra, foreign or inconsistent shard set,
    a catalog row in no shard or in two, too many failed rows, or a failed quality gate.
    """
    opts = opts or RebuildOptions()
    t0 = time.monotonic()
    loaded = load_catalog(catalog_uri, opts)
    run = shard_run_id(loaded.sha256, embedder.sha256, count, opts)
    by_id = {item.item_id: item for item in loaded.catalog.items}
    with open_store(as_uri(out_uri), s3_endpoint_url=opts.s3_endpoint_url) as store:
        try:
            merged = merge_shards(store, run, count, expected_ids=list(by_id), embedder_sha256=embedder.sha256)
        except ShardError as exc:
            raise RebuildRefused(
                f"shards of run {run} (this catalog, embedder and --merge-shards {count}) cannot be merged: {exc}"
            ) from exc
        if merged.thumbs is None:
            raise RebuildRefused(
                f"shards of run {run} were written without thumbnails (an older imgsearch): run the shards again"
            )
        failed = [
            {"line": by_id[x].line, "item_id": x, "reason": merged.skip_reasons.get(x, "not embedded")}
            for x in merged.skipped
        ]
        extra = {"shards": {"run": run, "count": count}, "timings_s": {"merge": round(time.monotonic() - t0, 2)}}
        items = [by_id[x] for x in merged.ids]
        # The merge has the embedder too: the gate's self-match sample is embedded here, as a whole build does.
        probes = probe(items, loaded.base_uri, embedder, opts)
        manifest = publish_rows(
            store, loaded, items, merged.vectors, failed, embedder, opts, extra, merged.thumbs, probes
        )
        # Published: the shard files are spent (the vectors are in the version). A failure here costs space only.
        try:
            store.delete_prefix(f"{SHARD_DIR}/{run}/")
        except StoreError as exc:
            log.warning("published %s, but could not delete the shards of run %s: %s", manifest["version"], run, exc)
    return manifest
