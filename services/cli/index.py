"""`imgsearch index build|show|duplicates`: run the rebuild job (whole, or sharded), describe a published index,
or list its near-duplicate listings."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from services.cli.flags import add_embedding_cache, add_s3_endpoint_url
from services.cli.index_flags import add_duplicates_flags, add_embedding_flags, add_publish_flags, add_shard_flags
from services.defaults import DEFAULT_CACHE_DIR

if TYPE_CHECKING:
    from ann_index.build.rebuild import RebuildOptions


def _options(args: argparse.Namespace) -> RebuildOptions:
    """RebuildOptions from `index build`'s flags: a flag and the option it sets share their name."""
    from dataclasses import fields

    from ann_index.build.rebuild import RebuildOptions

    named = {f.name for f in fields(RebuildOptions)} & set(vars(args))
    return RebuildOptions(
        **{name: getattr(args, name) for name in named},  # s3_endpoint_url among them
        progress=not args.no_progress,
        model_lanes=args.workers,  # one single-threaded embedder run per worker (rebuild_embedder)
    )


def _build(args: argparse.Namespace) -> int:
    # Imported here: `imgsearch --help` should not pay for onnxruntime and annoy.
    from ann_index.build.rebuild import RebuildRefused, rebuild
    from ann_index.shards.job import embed_shard, merge_and_publish
    from services.common.loading import model_store, rebuild_embedder

    try:
        model_dir = model_store(DEFAULT_CACHE_DIR, args.s3_endpoint_url).fetch(args.embedder)
        embedder = rebuild_embedder(model_dir, args.batch_size)
        opts = _options(args)
        if args.shard is not None:
            shard = embed_shard(args.catalog, args.out, embedder, args.shard, opts)
            if shard.reused:
                print(f"shard {shard.spec} of run {shard.run} is already complete in {args.out}: nothing to do")
            else:
                print(
                    f"wrote {shard.key} to {args.out}: shard {shard.spec}, {shard.embedded} items embedded, "
                    f"{shard.skipped} skipped; merge with --merge-shards {shard.spec.count}"
                )
            return 0
        if args.merge_shards is not None:
            manifest = merge_and_publish(args.catalog, args.out, embedder, args.merge_shards, opts)
        else:
            manifest = rebuild(args.catalog, args.out, embedder, opts)
    except RebuildRefused as exc:
        what = "nothing written" if args.shard is not None else "nothing published, CURRENT unchanged"
        print(f"imgsearch index build: REFUSED, {what}: {exc.message}", file=sys.stderr)
        return 3
    print(_published_line(manifest, args.out, args.merge_shards))
    return 0


def _published_line(manifest: dict[str, Any], out: str, merged_from: int | None) -> str:
    q = manifest["quality"]
    merged = f" from {merged_from} shards" if merged_from is not None else ""
    merged += f" as {manifest['partitions']} partitions" if "partitions" in manifest else ""
    return (
        f"published {manifest['version']}{merged} to {out}: {manifest['count']} items, "
        f"{len(manifest['categories'])} categories, skipped {manifest['skipped']['count']}; "
        f"recall@10 {q['recall_at_10']} (category {q['category_recall_at_10']}) at n_trees={manifest['n_trees']} "
        f"search_k={manifest['search_k']}; category P@10 {q['category_p_at_10']} R@1 {q['category_r_at_1']}"
    )


def _show(args: argparse.Namespace) -> int:
    from ann_index.version.publish import list_versions, published_manifest, read_current
    from imgcore.storage import open_store

    with open_store(args.uri, s3_endpoint_url=args.s3_endpoint_url) as store:
        current = read_current(store)
        versions = list_versions(store, complete_only=False)
        version = args.version or current
        if version is None:
            print(f"{args.uri}: nothing published (no CURRENT); versions: {versions or 'none'}")
            return 1
        manifest = published_manifest(store, version)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    emb, q = manifest["embedder"], manifest["quality"]
    print(f"store     {args.uri}\nCURRENT   {current}\nversions  {', '.join(versions)}")
    print(f"version   {manifest['version']} (created {manifest.get('created_at')})")
    print(f"embedder  {emb['name']} {emb['version']} sha256 {emb['sha256'][:12]} dim {emb['dim']} {emb['metric']}")
    print(f"items     {manifest['count']}; skipped {manifest['skipped']['count']}")
    for name, info in manifest["categories"].items():
        print(f"  {name:<20}{info['count']:>8}  {info.get('file', 'across the partitions')}")
    for part in manifest.get("parts", []):
        print(f"  {part['dir']:<20}{part['count']:>8}  items")
    print(f"annoy     n_trees {manifest['n_trees']}, search_k {manifest['search_k']}")
    print(
        f"quality   recall@10 {q['recall_at_10']} (target {q['recall_target']}), per-category "
        f"{q['category_recall_at_10']}, category P@10 {q['category_p_at_10']}, R@1 {q['category_r_at_1']}"
    )
    return 0


def _duplicates(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from ann_index.version.duplicates import find_duplicates, report_bytes, version_rows
    from ann_index.version.publish import read_current
    from imgcore.fingerprint import DUPLICATE_PRINT_SCORE
    from imgcore.storage import as_uri, open_store

    with open_store(as_uri(args.index_uri), s3_endpoint_url=args.s3_endpoint_url) as store:
        version = args.version or read_current(store)
        if version is None:
            print(f"imgsearch index duplicates: error: nothing published at {args.index_uri}", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory(prefix="imgsearch-duplicates-") as work:
            prints, items = version_rows(store, version, Path(work))
    pairs = find_duplicates(prints, items, args.threshold or DUPLICATE_PRINT_SCORE)
    report = report_bytes(pairs)
    if args.out:
        Path(args.out).write_bytes(report)
    else:
        sys.stdout.buffer.write(report)
    where = f" to {args.out}" if args.out else ""
    print(f"{len(pairs)} near-duplicate pair(s) of {len(items)} images in {version}{where}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("index", help="build (rebuild job) or show a published annoy index")
    cmds = parser.add_subparsers(dest="index_command", required=True)

    build = cmds.add_parser("build", help="catalog -> embeddings -> annoy -> quality gate -> publish")
    build.add_argument("--catalog", required=True, metavar="URI", help="catalog.jsonl: path, file:// or s3://")
    build.add_argument("--out", required=True, metavar="URI", help="index store root: path, file:// or s3://")
    build.add_argument("--n-trees", type=int, default=32, help="annoy trees per index (default 32)")
    build.add_argument(
        "--workers",
        type=int,
        default=2,
        help="model lanes: single-threaded embedder runs at once, one per core; also annoy's build threads "
        "(default 2; one decode thread per two lanes)",
    )
    build.add_argument("--batch-size", type=int, default=32, help="embedder batch size (default 32)")
    add_embedding_flags(build)
    build.add_argument("--keep", type=int, default=3, help="published versions to keep (default 3)")
    build.add_argument("--recall-target", type=float, default=0.95, help="gate: recall@10 target (default 0.95)")
    build.add_argument("--seed", type=int, default=42, help="annoy seed: same input + seed = same files")
    build.add_argument(
        "--crop",
        choices=("full", "foreground"),
        default="foreground",
        help="embed each catalog image cropped to its foreground box, as a search embeds a whole photo "
        "(default), or the whole image (the gate's self-match check measures what that costs)",
    )
    add_s3_endpoint_url(build, "catalog, index or embedder store")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument(
        "--allow-absolute-images",
        action="store_true",
        help="catalog images may be absolute URIs or /paths (default: only paths inside the catalog's folder; "
        "other rows are skipped and count against the failure budget)",
    )
    add_embedding_cache(
        build,
        "a rebuild re-embeds only new and changed images. Keep it on a persistent volume; an unreadable one is "
        "moved aside",
    )
    add_shard_flags(build)
    add_publish_flags(build)
    build.set_defaults(func=_build)

    show = cmds.add_parser("show", help="print CURRENT, the versions and the current manifest")
    show.add_argument("uri", help="index store root: path, file:// or s3://")
    show.add_argument("--version", default=None, help="show this version instead of CURRENT")
    show.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    add_s3_endpoint_url(show, "index store")
    show.set_defaults(func=_show)

    dups = cmds.add_parser(
        "duplicates",
        help="near-identical images of different products in a published index (re-uploaded listings), as JSON "
        'Lines {"a": item_id, "b": item_id, "score": cosine}, best first',
    )
    add_duplicates_flags(dups)
    add_s3_endpoint_url(dups, "index store")
    dups.set_defaults(func=_duplicates)
