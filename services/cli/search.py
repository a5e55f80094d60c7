"""`imgsearch search PHOTO`: the command-line client of the gateway; prints a short table of the answer
(`--json`: the answer itself)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# The table fits a terminal: at most this many lines, whatever the number of items and k.
MAX_LINES = 40
TITLE_WIDTH = 40


def _item_line(n: int, item: dict[str, Any]) -> str:
    """`1. top 0.73 [189,106,280,378] in T-shirt/top, Shirt`: which item, where, among which categories."""
    label = item.get("label") or ("whole photo" if item.get("fallback") else item.get("source") or "item")
    score = item.get("score")
    box = ",".join(str(round(v)) for v in item.get("box") or [])
    searched = item.get("searched_category")
    among = ", ".join(searched) if isinstance(searched, list) else (searched or "all categories")
    return f"{n}. {label}{f' {score:.2f}' if isinstance(score, int | float) else ''} [{box}] in {among}"


def _result_lines(results: list[dict[str, Any]]) -> list[str]:
    id_width = max((len(str(hit["item_id"])) for hit in results), default=2)
    cat_width = max((len(str(hit.get("category") or "")) for hit in results), default=8)
    lines = []
    for rank, hit in enumerate(results, 1):
        title = str(hit.get("title") or "")
        title = title if len(title) <= TITLE_WIDTH else title[: TITLE_WIDTH - 1] + "…"
        category = str(hit.get("category") or "")
        lines.append(
            f"  {rank:>3}  {hit['score']:.3f}  {hit['item_id']!s:<{id_width}}  {category:<{cat_width}}  {title}"
        )
    return lines


def format_table(body: dict[str, Any], k: int) -> list[str]:
    """The answer as at most MAX_LINES lines: one per item, then its results (rank, score, id, category,
    title), fewer of them per item when there are many items; then what was seen and not searched."""
    items: list[dict[str, Any]] = body.get("items", [])
    timings = body.get("timings_ms") or {}
    stages = ", ".join(f"{stage} {ms:.0f}" for stage, ms in timings.items() if stage != "total")
    head = f"{len(items)} item(s), index {body.get('index_version')}, {timings.get('total', 0):.0f} ms ({stages})"
    lines = [head]
    room = MAX_LINES - 3  # the head, the ignored line, the note
    shown = items[: max(1, room // 2)]
    per_item = max(1, min(k, room // max(1, len(shown)) - 1))
    for n, item in enumerate(shown, 1):
        lines.append(_item_line(n, item))
        lines.extend(_result_lines(item.get("results", [])[:per_item]))
    if body.get("ignored"):
        lines.append("not searched: " + ", ".join(f"{i.get('label')} ({i.get('why')})" for i in body["ignored"]))
    if len(shown) < len(items) or any(len(item.get("results", [])) > per_item for item in shown):
        lines.append(f"(showing {per_item} result(s) per item for {len(shown)} of {len(items)} item(s); --json: all)")
    return lines


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
    if args.json:
        print(json.dumps(body, indent=2, ensure_ascii=False))
    elif resp.status_code != 200:
        print(f"HTTP {resp.status_code}: {body.get('error', body)}", file=sys.stderr)
    else:
        print("\n".join(format_table(body, args.k)))
    return 0 if resp.status_code == 200 else 1


def register(sub: Any) -> None:
    """Add `search PHOTO`."""
    parser = sub.add_parser("search", help="search similar items for a photo", description=__doc__)
    parser.add_argument("photo", help="image file")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="gateway URL (default %(default)s)")
    parser.add_argument("-k", "--k", type=int, default=10, help="results per item (default 10)")
    parser.add_argument(
        "--category",
        default=None,
        help="search in this catalog category: the whole photo, your --box, a flat-lay's items and the detected "
        "items whose kind includes it; other items are listed as not searched (other_category)",
    )
    parser.add_argument("--box", default=None, help="x1,y1,x2,y2: search only this region")
    parser.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    parser.set_defaults(func=run_search)
