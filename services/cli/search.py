"""`imgsearch search PHOTO`: the command-line client of the gateway; prints the result JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def run_search(args: argparse.Namespace) -> int:
    """POST the photo to /v1/search and print the answer."""
    import httpx

    photo = Path(args.photo)
    try:
        data = photo.read_bytes()
    except OSError as exc:
        print(f"cannot read {photo}: {exc}", file=sys.stderr)
        return 2
    params: dict[str, Any] = {"k": args.k}
    if args.category:
        params["category"] = args.category
    if args.box:
        params["box"] = args.box
    try:
        resp = httpx.post(
            args.url.rstrip("/") + "/v1/search",
            params=params,
            files={"image": (photo.name, data)},
            timeout=args.timeout,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    try:
        body = resp.json()
    except ValueError:
        body = {"error": resp.text}
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return 0 if resp.status_code == 200 else 1


def register(sub: Any) -> None:
    """Add `search PHOTO`."""
    parser = sub.add_parser("search", help="search similar items for a photo", description=__doc__)
    parser.add_argument("photo", help="image file")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="gateway URL (default %(default)s)")
    parser.add_argument("-k", "--k", type=int, default=10, help="results per item (default 10)")
    parser.add_argument("--category", default=None, help="search only this catalog category")
    parser.add_argument("--box", default=None, help="x1,y1,x2,y2: search only this region")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    parser.set_defaults(func=run_search)
