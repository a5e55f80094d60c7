"""`imgsearch catalog fashion-mnist`: write a demo product catalog (PNG images + catalog.jsonl)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def _fashion_mnist(args: argparse.Namespace) -> int:
    from ann_index.catalog.demo import write_fmnist_catalog

    t0 = time.monotonic()
    path = write_fmnist_catalog(args.out, split=args.split, limit=args.limit, shop_photos=args.shop_photos)
    rows = sum(1 for _ in path.open(encoding="utf-8"))
    print(f"wrote {rows} items to {path} in {time.monotonic() - t0:.1f} s")
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("catalog", help="write demo catalogs")
    cmds = parser.add_subparsers(dest="catalog_command", required=True)
    fm = cmds.add_parser("fashion-mnist", help="Fashion-MNIST as a shop catalog: dark item on white, 112x112 PNG")
    fm.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    fm.add_argument("--limit", type=int, default=None, help="first N products only")
    fm.add_argument(
        "--shop-photos",
        action="store_true",
        help="rows name their product, and one product in ten also gets a shopper's photo (JPEG) as its second "
        "image, as in `imgsearch up`",
    )
    fm.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="train (default) for catalogs; test for evaluation queries",
    )
    fm.set_defaults(func=_fashion_mnist)
