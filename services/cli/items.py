"""`imgsearch items apply`: catalog changes (upserts, deletes) made searchable between rebuilds."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from services.cli.flags import add_embedding_cache, add_s3_endpoint_url
from services.defaults import DEFAULT_CACHE_DIR, DEFAULT_EMBEDDER_URI

if TYPE_CHECKING:
    from ann_index.build.embedding import RebuildOptions
    from embedder import Embedder


def _apply(args: argparse.Namespace) -> int:
    # Imported here: `imgsearch --help` should not pay for onnxruntime.
    from ann_index.changes.apply import ChangesRefused, apply_changes

    try:
        applied = apply_changes(args.changes, args.index_uri, _embedder(args), _opts(args))
    except ChangesRefused as exc:
        print(f"imgsearch items apply: REFUSED, nothing written: {exc.message}", file=sys.stderr)
        if args.json and exc.problems:
            print(json.dumps({"refused": exc.message, "rows": exc.problems}, indent=2))
        return 3
    if args.json:
        print(json.dumps(applied.to_dict(), indent=2))
    else:
        carried = "".join(f"; also written to {v} as change {s}" for v, s in applied.also)
        print(
            f"applied {applied.upserts} upserts ({applied.reused} vectors from the embedding cache) and "
            f"{applied.deletes} deletes to {args.index_uri}: "
            f"index {applied.version} change {applied.seq}{carried}"
        )
    return 0


def _embedder(args: argparse.Namespace) -> Embedder:
    from services.common.loading import model_store, rebuild_embedder

    model_dir = model_store(DEFAULT_CACHE_DIR, args.s3_endpoint_url).fetch(args.embedder)
    return rebuild_embedder(model_dir)


def _opts(args: argparse.Namespace) -> RebuildOptions:
    from ann_index.build.embedding import RebuildOptions

    return RebuildOptions(
        workers=args.workers,
        model_lanes=args.workers,
        s3_endpoint_url=args.s3_endpoint_url,
        progress=False,
        allow_absolute_images=args.allow_absolute_images,
        embedding_cache=args.embedding_cache,
    )


def _drain(args: argparse.Namespace) -> int:
    from ann_index.changes.inbox import drain_inbox

    outcomes = drain_inbox(args.inbox, args.index_uri, _embedder(args), _opts(args))
    for o in outcomes:
        what = f"change {o['version']}/{o['seq']}" if o["outcome"] == "applied" else f"REFUSED: {o['error']}"
        print(f"{o['file']}: {what}")
    print(f"drained {args.inbox}: {len(outcomes)} file(s)")
    return 3 if any(o["outcome"] == "refused" for o in outcomes) else 0


def _common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index-uri", required=True, metavar="URI", help="index store root: path, file:// or s3://")
    parser.add_argument(
        "--embedder",
        default=DEFAULT_EMBEDDER_URI,
        metavar="URI",
        help="embedder model folder URI; refused unless the served version was built with it",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="model lanes: single-threaded embedder runs at once, one per core (default 2; one decode thread per "
        "two lanes)",
    )
    add_s3_endpoint_url(parser)
    parser.add_argument("--allow-absolute-images", action="store_true", help="images may be absolute URIs or /paths")
    add_embedding_cache(
        parser,
        "the rebuild's (index build --embedding-cache). An upsert whose image bytes it holds (an attribute-only "
        "change: price, stock) takes that vector and runs no model; vectors computed here are added",
    )


def register(sub: Any) -> None:
    parser = sub.add_parser("items", help="apply catalog changes between rebuilds (fresh items, deletions)")
    cmds = parser.add_subparsers(dest="items_command", required=True)
    apply = cmds.add_parser(
        "apply",
        help="validate and embed a changes file, then write it to the served version's change log (durable "
        "when this returns 0); every index replica applies it within seconds",
    )
    apply.add_argument(
        "--changes",
        required=True,
        metavar="URI",
        help='JSON Lines: catalog rows with "op": "upsert", or {"op": "delete", "item_id": ...}; path, '
        "file:// or s3://; images resolve relative to it as a catalog's do",
    )
    _common_flags(apply)
    apply.add_argument("--json", action="store_true", help="print the outcome (or the refused rows) as JSON")
    apply.set_defaults(func=_apply)
    drain = cmds.add_parser(
        "drain",
        help="apply every changes file in an inbox prefix (oldest name first), moving each to applied/ or "
        "refused/ with a .result.json; what the k8s items-apply CronJob runs",
    )
    drain.add_argument("--inbox", required=True, metavar="URI", help="store prefix the catalog system writes to")
    _common_flags(drain)
    drain.set_defaults(func=_drain)
