"""`imgsearch models publish|pull`: put model folders in an object store, pull them into the local cache."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from services.cli.flags import add_s3_endpoint_url
from services.defaults import DEFAULT_CACHE_DIR, MODELS_DIR


def _publish(args: argparse.Namespace) -> int:
    from imgcore.modelstore import publish_models

    for uri in publish_models(args.models_dir, args.to, s3_endpoint_url=args.s3_endpoint_url):
        print(uri)
    return 0


def _pull(args: argparse.Namespace) -> int:
    from services.common.loading import model_store

    store = model_store(args.cache_dir, args.s3_endpoint_url, args.timeout, mirrors=args.mirror, retries=args.retries)
    print(store.pull(args.uri, sha256=args.sha256))
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("models", help="publish models to an object store, or pull them into the cache")
    models = parser.add_subparsers(dest="models_command", required=True)

    pub = models.add_parser(
        "publish", help="upload every <models-dir>/<name>/{card.json,model.onnx}, or one model folder as it is"
    )
    pub.add_argument("--to", required=True, metavar="URI", help="store root: s3://bucket/prefix or file:///dir")
    pub.add_argument(
        "--models-dir",
        type=Path,
        default=MODELS_DIR,
        help=f"default {MODELS_DIR}; a folder with a card.json is published alone, under its card's name",
    )
    add_s3_endpoint_url(pub, "model store")
    pub.set_defaults(func=_publish)

    pull = models.add_parser("pull", help="fetch and verify one model folder; print its local path")
    pull.add_argument("uri", help="model folder URI holding card.json and model.onnx")
    pull.add_argument("--sha256", default=None, metavar="HEX", help="refuse any model whose sha256 differs")
    pull.add_argument(
        "--model-cache-dir",
        dest="cache_dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        metavar="DIR",
        help=f"default {DEFAULT_CACHE_DIR}",
    )
    pull.add_argument("--cache-dir", dest="cache_dir", type=Path, help=argparse.SUPPRESS)  # the old name
    pull.add_argument(
        "--mirror", action="append", default=[], metavar="URI", help="base URI tried after the primary (repeatable)"
    )
    pull.add_argument("--retries", type=int, default=3, help="extra attempts per object on transient errors")
    pull.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    add_s3_endpoint_url(pull, "model store")
    pull.set_defaults(func=_pull)
