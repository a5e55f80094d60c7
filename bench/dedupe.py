"""Benchmark: `dedupe=true` on similar items (issue 28): what collapsing near-identical pictures costs and
what it leaves out, measured side by side through real services.

The demo stack (`--items` demo products, the gateway's result cache off) answers
`GET /v1/items/{id}/similar?k=10` for `--queries` sampled catalog items, each item three times in a row:
plain, `dedupe=true` the first time (the index fingerprints the hits' thumbnails: ann_index/serving/prints.py)
and `dedupe=true` again (fingerprints cached). Reported: latency p50/p95 of each and the ratios to plain; how
many of the plain top 10 the dedupe answer left out, next to how many the rule before fingerprints (embedding
cosine >= 0.995 to a higher-ranked hit, over the same 30 hits) would have left out.

    python bench/dedupe.py                       # 3 000 products, 200 queries
    python bench/dedupe.py --items 1000 --queries 50
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arg_parser, demo_data, emit, machine, pct, start_stack, table  # noqa: E402

MODES = ("plain", "dedupe_first", "dedupe_cached")
COSINE = 0.995  # the embedding-cosine rule `dedupe` had before fingerprints
K = 10


def _timed(http: httpx.Client, url: str, params: dict[str, Any]) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    resp = http.get(url, params=params)
    seconds = time.perf_counter() - t0
    resp.raise_for_status()
    return seconds * 1e3, [h["item_id"] for h in resp.json()["results"]]


def _cosine_left_out(http: httpx.Client, index: str, item_id: str) -> int:
    """How many of the item's plain top 10 the cosine rule would leave out (vectors from the index)."""
    hits = http.get(f"{index}/v1/items/{item_id}/similar", params={"k": 3 * K}).json()["results"]
    vectors = [np.asarray(http.get(f"{index}/v1/items/{h['item_id']}").json()["vector"], np.float32) for h in hits]
    kept: list[int] = []
    for i, v in enumerate(vectors):
        if not any(float(vectors[j] @ v) >= COSINE for j in kept):
            kept.append(i)
        if len(kept) == K:
            break
    return K - sum(1 for i in kept if i < K)


def main() -> int:
    parser = arg_parser(__doc__)
    parser.add_argument("--items", type=int, default=3000, help="demo products")
    parser.add_argument("--queries", type=int, default=200, help="sampled catalog items")
    args = parser.parse_args()
    data = demo_data(args.items)
    rows = (data / "catalog" / "catalog.jsonl").read_text().splitlines()
    ids = [json.loads(line)["item_id"] for line in rows]
    sample = [ids[i] for i in np.random.default_rng(0).choice(len(ids), args.queries, replace=False)]
    stack = start_stack(data, extra={"gateway": ["--cache-size", "0"]})
    latency: dict[str, list[float]] = {m: [] for m in MODES}
    left_out, cosine_left_out = [], []
    try:
        with httpx.Client(timeout=60, trust_env=False) as http:
            for item_id in sample:
                url = f"{stack.gateway_url}/v1/items/{item_id}/similar"
                ms, plain = _timed(http, url, {"k": K})
                latency["plain"].append(ms)
                for mode in MODES[1:]:
                    ms, deduped = _timed(http, url, {"k": K, "dedupe": "true"})
                    latency[mode].append(ms)
                left_out.append(len(set(plain) - set(deduped)))
                cosine_left_out.append(_cosine_left_out(http, stack.url("index"), item_id))
    finally:
        stack.close()
    stats = {m: pct(latency[m]) for m in MODES}
    ratio = {m: stats[m]["p50"] / stats["plain"]["p50"] for m in MODES}
    print(table(["similar, k=10", "p50 ms", "p95 ms", "p50 / plain"], [[m, stats[m]["p50"], stats[m]["p95"], ratio[m]]
                                                                      for m in MODES]))  # fmt: skip
    fingerprints, cosine = float(np.mean(left_out)), float(np.mean(cosine_left_out))
    print(f"left out of the plain top {K} per query: fingerprints {fingerprints:.2f}, cosine >= {COSINE} {cosine:.2f}")
    emit({"bench": "dedupe", "items": len(ids), "queries": len(sample), "latency_ms": stats, "p50_ratio": ratio,
          "left_out_per_query": {"fingerprints": fingerprints, "cosine": cosine}, "machine": machine()})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
