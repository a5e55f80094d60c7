"""`imgsearch replay --log URI --url GATEWAY`: re-run logged searches against a gateway and compare answers.

Reads the gateway's query log (services/gateway/query_log.py), posts each logged image with its parameters
to GATEWAY/v1/search, prints one line per query and a final JSON line: `queries`, `overlap_at_10`, `errors`
and latency percentiles. Exit code 1 when a query failed or the log holds none.

`overlap_at_10` is the mean over the logged items of overlap@10 as the shadow's metric counts it
(`imgcore.retrieval.overlap_at`): |logged top-10 ∩ new top-10| / 10, or over the longer of the two lists
when both hold fewer than 10; items are matched by their order in the answer, and an item without results
in either answer is left out of the mean. Until this definition was shared, an item logged with fewer than
10 results was scored over its logged results only (a new answer with more results was not held against
it), and an item empty in both answers counted as 1.0.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgcore.retrieval import overlap_at
from imgcore.storage import ObjectStore, open_store
from services.cli.flags import add_s3_endpoint_url
from services.gateway.query_log import key_time

TOP = 10


@dataclass(frozen=True)
class Replayed:
    """One logged query sent again: the HTTP status (0: no answer), its latency and its item overlaps."""

    name: str
    status: int
    ms: float
    overlaps: list[float]
    error: str | None = None


def logged_queries(store: ObjectStore, limit: int | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, record) of the logged searches, oldest object first; at most `limit`."""
    count = 0
    keys = [(when, key) for key in store.list("queries-") if (when := key_time(key)) is not None]
    for _, key in sorted(keys):
        for line_no, line in enumerate(store.get_bytes(key).splitlines(), start=1):
            if limit is not None and count >= limit:
                return
            if line.strip():
                count += 1
                yield f"{key}:{line_no}", json.loads(line)


def item_overlaps(logged: list[dict[str, Any]], answer: list[dict[str, Any]]) -> list[float]:
    """overlap@10 of each logged item with the new answer's item at the same place (none there: no results).

    Items with results in neither answer are left out: the list may be shorter than `logged`.
    """
    overlaps = []
    for i, item in enumerate(logged):
        new = [hit["item_id"] for hit in answer[i]["results"]] if i < len(answer) else []
        if (value := overlap_at(item["results"], new, TOP)) is not None:
            overlaps.append(value)
    return overlaps


def replay_one(client: Any, url: str, name: str, record: dict[str, Any]) -> Replayed:
    """POST one logged query and compare the answer with the logged one."""
    import httpx

    params = record["params"]
    query: dict[str, Any] = {"k": params["k"]}
    if params.get("category"):
        query["category"] = params["category"]
    if params.get("box"):
        query["box"] = ",".join(str(v) for v in params["box"])
    image = base64.b64decode(record["image"])
    files = {"image": ("logged", image, record.get("image_type", "application/octet-stream"))}
    t0 = time.perf_counter()
    try:
        resp = client.post(url.rstrip("/") + "/v1/search", params=query, files=files)
    except httpx.HTTPError as exc:
        return Replayed(name, 0, (time.perf_counter() - t0) * 1e3, [], f"{type(exc).__name__}: {exc}")
    ms = (time.perf_counter() - t0) * 1e3
    if resp.status_code != 200:
        return Replayed(name, resp.status_code, ms, [], resp.text[:200])
    return Replayed(name, 200, ms, item_overlaps(record["items"], resp.json()["items"]))


def summary(done: list[Replayed]) -> dict[str, Any]:
    """The final line: counts, mean item overlap and latency percentiles of the answered queries."""
    overlaps = [o for r in done for o in r.overlaps]
    latencies = [r.ms for r in done if r.error is None]
    p50, p95 = (float(np.percentile(latencies, q)) for q in (50, 95)) if latencies else (None, None)
    return {
        "queries": len(done),
        "overlap_at_10": round(float(np.mean(overlaps)), 4) if overlaps else None,
        "errors": sum(r.error is not None for r in done),
        "latency_ms": {"p50": p50 and round(p50, 1), "p95": p95 and round(p95, 1)},
    }


def run_replay(args: argparse.Namespace) -> int:
    """Replay the log, a line per query, then the summary."""
    import httpx

    store = open_store(args.log, s3_endpoint_url=args.s3_endpoint_url)
    records = list(logged_queries(store, args.limit))
    done: list[Replayed] = []
    with (
        httpx.Client(timeout=args.timeout, trust_env=False) as client,
        ThreadPoolExecutor(max_workers=args.concurrency) as pool,
    ):
        for result in pool.map(lambda nr: replay_one(client, args.url, *nr), records):
            done.append(result)
            overlap = f"{np.mean(result.overlaps):.3f}" if result.overlaps else "-"
            print(
                f"{result.name} status={result.status} ms={result.ms:.1f} overlap_at_10={overlap}"
                + (f" error={result.error!r}" if result.error else ""),
                flush=True,
            )
    out = summary(done)
    print(json.dumps(out), flush=True)
    return 0 if done and out["errors"] == 0 else 1


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(sub: Any) -> None:
    """Add `replay --log URI --url GATEWAY`."""
    parser = sub.add_parser("replay", help="replay the gateway's query log against a gateway", description=__doc__)
    parser.add_argument("--log", required=True, help="query log store URI (the gateway's --query-log-uri)")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="gateway URL (default %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="replay at most this many queries (oldest first)")
    parser.add_argument("--concurrency", type=_positive, default=4, help="queries in flight (default 4)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per query (default 30)")
    add_s3_endpoint_url(parser, "log")
    parser.set_defaults(func=run_replay)
