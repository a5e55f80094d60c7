"""`imgsearch eval`: R@1/5/10 and P@10 by category for labelled queries, item R@1/R@10 for shopper photos of
catalog items and self-match@1 for their catalog images, in-process and/or via a gateway."""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from imgcore.errors import NotFound
from imgcore.storage import fetch_uri_bytes
from services.cli.flags import add_s3_endpoint_url
from services.defaults import DEFAULT_CACHE_DIR, DEFAULT_EMBEDDER_URI, DEFAULT_VAR_DIR

if TYPE_CHECKING:
    import httpx

    from ann_index.evaluate import EvalReport, Hit, Query


def evaluate_via_gateway(
    url: str,
    queries: Sequence[Query],
    *,
    k: int = 10,
    concurrency: int = 4,
    timeout_s: float = 30.0,
    client_factory: Callable[[], httpx.Client] | None = None,
) -> EvalReport:
    """POST each query image to `<url>/v1/search?k=<k>`; (category, item id) of items[0].results."""
    import httpx  # imported here: `imgsearch --help` should not pay for it

    from ann_index.evaluate import score

    client = client_factory() if client_factory else httpx.Client(timeout=timeout_s)

    def one(query: Query) -> list[Hit] | None:
        data = fetch_uri_bytes(query.image_uri)
        name = query.image_uri.rsplit("/", 1)[-1]
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        try:
            resp = client.post(f"{url.rstrip('/')}/v1/search", params={"k": k}, files={"image": (name, data, mime)})
            resp.raise_for_status()
            items = resp.json().get("items") or []
        except (httpx.HTTPError, ValueError):
            return None
        return [(str(r.get("category")), str(r.get("item_id"))) for r in items[0].get("results", [])] if items else []

    with client, ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, queries))
    return score(queries, results, k)


def _in_process(args: argparse.Namespace, queries: list[Any]) -> dict[str, Any]:
    from ann_index.evaluate import evaluate_in_process, format_report
    from ann_index.serving.reader import IndexReader
    from ann_index.version.publish import read_current, sync_version
    from embedder import Embedder
    from imgcore.storage import open_store
    from services.common.loading import model_store

    with open_store(args.index, s3_endpoint_url=args.s3_endpoint_url) as store:
        version = args.version or read_current(store)
        if version is None:
            raise NotFound(f"nothing published at {args.index} (no CURRENT)")
        local = sync_version(store, version, DEFAULT_VAR_DIR / "cache" / "index")
    with IndexReader.open(local, embedder_sha256=None, dim=None) as probe:
        pinned = probe.manifest["embedder"]["sha256"]
    # Pinning the manifest's sha256 makes a different model at --embedder a clear error, not bad numbers.
    model_dir = model_store(DEFAULT_CACHE_DIR, args.s3_endpoint_url).fetch(args.embedder, sha256=pinned)
    embedder = Embedder(model_dir, intra_threads=args.workers)
    with IndexReader.open(local, embedder_sha256=embedder.sha256, dim=embedder.dim, verify=False) as reader:
        report = evaluate_in_process(reader, embedder, queries, k=args.k, workers=args.workers)
    print(format_report(report, f"in-process, index {version}"))
    return report.to_dict()


def _run(args: argparse.Namespace) -> int:
    from ann_index.evaluate import format_report, load_queries

    if not args.index and not args.url:
        print("imgsearch eval: give --index, --url or both", file=sys.stderr)
        return 2
    if not args.queries and not args.catalog:
        print("imgsearch eval: give --queries, --catalog (item queries) or both", file=sys.stderr)
        return 2
    queries = load_queries(args.queries, args.limit) if args.queries else []
    if args.catalog:
        queries += load_queries(str(_item_queries(args)))
    out: dict[str, Any] = {}
    if args.index:
        out["in_process"] = _in_process(args, queries)
    if args.url:
        report = evaluate_via_gateway(args.url, queries, k=args.k, concurrency=args.concurrency)
        print(format_report(report, f"gateway {args.url}"))
        out["gateway"] = report.to_dict()
    print(json.dumps({k: {m: v for m, v in r.items() if m != "per_category"} for k, r in out.items()}))
    return 0


def _item_queries(args: argparse.Namespace) -> Any:
    """Write the item query set of --catalog (shopper photos and catalog images of sampled items); its path."""
    import tempfile
    from pathlib import Path

    from ann_index.catalog.load import ReadOptions
    from embedder.training.item_queries import write_item_queries

    out = Path(args.write_queries) if args.write_queries else Path(tempfile.mkdtemp(prefix="imgsearch-items-"))
    opts = ReadOptions(s3_endpoint_url=args.s3_endpoint_url, progress=False)
    return write_item_queries(args.catalog, out, args.item_queries, seed=args.seed, opts=opts)


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "eval", help="retrieval quality: R@1/5/10, P@10 by category; item R@1/R@10 and self-match@1 (--catalog)"
    )
    parser.add_argument("--index", default=None, metavar="URI", help="index store root (CURRENT is evaluated)")
    parser.add_argument("--version", default=None, help="evaluate this index version instead of CURRENT")
    parser.add_argument(
        "--queries",
        default=None,
        metavar="DIR_OR_JSONL",
        help="catalog-format JSONL, a folder with catalog.jsonl, or <category>/ image folders",
    )
    parser.add_argument(
        "--catalog",
        default=None,
        metavar="URI",
        help="the index's catalog: item queries of --item-queries sampled items (a shopper's photo of each, "
        "and its catalog image as it is)",
    )
    parser.add_argument("--item-queries", type=int, default=500, help="items sampled with --catalog (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="which items and photos (default 0)")
    parser.add_argument("--write-queries", default=None, metavar="DIR", help="keep the item query set in DIR")
    parser.add_argument("--url", default=None, help="also evaluate through a running gateway at this URL")
    parser.add_argument("--limit", type=int, default=None, help="first N queries only")
    parser.add_argument("-k", "--k", type=int, default=10, help="results per query (default 10)")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER_URI, metavar="URI", help="embedder model folder URI")
    parser.add_argument("--workers", type=int, default=2, help="decode/embedder threads (default 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="parallel gateway requests (default 4)")
    add_s3_endpoint_url(parser, "index or embedder store")
    parser.set_defaults(func=_run)
