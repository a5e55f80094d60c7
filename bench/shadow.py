"""The gateway's CPU cost of shadow evaluation: shadow sample rate 0 vs 1.0, side by side.

    python bench/shadow.py [--items 3000] [--fmnist 30] [--rounds 5]

Starts the four services on a Fashion-MNIST demo index (bench/common.py) and a second gateway on the same
detector, embedder and index with `--shadow-sample-rate 1.0` and a candidate pair that is a copy of
production (the same embedder and index), both with `--cache-size 0`. In interleaved rounds (the order of
the two gateways alternating, so drift on a shared machine hits both) it sends the same photos, one at a
time, to each gateway, and waits until the shadowing gateway's queue has drained (every shadow search
counted), so its background work is inside its measurement. Gateway CPU per search is user + system time
from /proc/<pid>/stat over the round. Prints a table; last line, one JSON object:
`{"gateway_cpu_ms": {"shadow_0": ..., "shadow_1": ...}, "overhead_ms": ..., "overhead_pct": ..., ...}`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    arg_parser,
    demo_data,
    emit,
    machine,
    median,
    pct,
    query_photos,
    start_stack,
    table,
)
from e2e import cpu_seconds  # noqa: E402

from services.stack import ServiceProcess, free_port, start_service  # noqa: E402
from tests.helpers.http import metric_value  # noqa: E402

MODES = ("shadow_0", "shadow_1")


def shadow_done(base: str) -> float:
    """Shadow searches finished (any result) by the gateway at `base`."""
    text = httpx.get(base + "/metrics", timeout=5.0, trust_env=False).text
    return sum(
        metric_value(text, "imgsearch_shadow_requests_total", result=r) for r in ("ok", "error", "timeout", "dropped")
    )


def one_round(
    gateway: ServiceProcess, photos: list[tuple[str, bytes]], client: httpx.Client, *, shadowing: bool
) -> tuple[float, list[float]]:
    """Gateway CPU seconds and client latencies (ms) of one pass over the photos, the shadow work included."""
    done = shadow_done(gateway.url)
    cpu0 = cpu_seconds(gateway.proc.pid)
    latencies = []
    for name, data in photos:
        t0 = time.perf_counter()
        resp = client.post(gateway.url + "/v1/search", params={"k": 10}, files={"image": (name, data)})
        latencies.append((time.perf_counter() - t0) * 1e3)
        resp.raise_for_status()
    deadline = time.monotonic() + 120
    while shadowing and shadow_done(gateway.url) < done + len(photos) and time.monotonic() < deadline:
        time.sleep(0.05)
    return cpu_seconds(gateway.proc.pid) - cpu0, latencies


def main() -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--items", type=int, default=3000, help="demo index size (default 3000)")
    ap.add_argument("--fmnist", type=int, default=30, help="Fashion-MNIST photos besides the real ones (default 30)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    args = ap.parse_args()
    data = demo_data(args.items)
    photos = query_photos(args.fmnist)
    stack = start_stack(data, extra={"gateway": ["--cache-size", "0"]})
    shadow_args = [
        *stack.args["gateway"],
        f"--shadow-embedder-url={stack.url('embedder')}",
        f"--shadow-index-url={stack.url('index')}",
        "--shadow-sample-rate=1.0",
    ]
    shadowed = start_service("gateway", free_port(), args=shadow_args, log_path=stack.root / "logs" / "shadow.log")
    gateways = {"shadow_0": stack.services["gateway"], "shadow_1": shadowed}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    latency: dict[str, list[float]] = {m: [] for m in MODES}
    try:
        assert shadowed.wait_ready(120), shadowed.log_tail()
        with httpx.Client(timeout=60.0, trust_env=False) as client:
            for mode in MODES:  # warm-up: connection pools, allocators, page cache
                one_round(gateways[mode], photos, client, shadowing=mode == "shadow_1")
            for r in range(args.rounds):
                for mode in MODES if r % 2 == 0 else MODES[::-1]:
                    seconds, ms = one_round(gateways[mode], photos, client, shadowing=mode == "shadow_1")
                    cpu[mode].append(seconds * 1e3 / len(photos))
                    latency[mode] += ms
        text = httpx.get(shadowed.url + "/metrics", timeout=5.0, trust_env=False).text
    finally:
        shadowed.stop()
        stack.close()
    per_search = {m: median(cpu[m]) for m in MODES}
    rows = [
        [m, f"{per_search[m]:.2f}", f"{pct(latency[m])['p50']:.1f}", f"{pct(latency[m])['p95']:.1f}"] for m in MODES
    ]
    print(table(["gateway", "CPU ms/search (median of rounds)", "latency p50 ms", "p95 ms"], rows))
    overhead = per_search["shadow_1"] - per_search["shadow_0"]
    results = {r: metric_value(text, "imgsearch_shadow_requests_total", result=r) for r in ("ok", "error", "dropped")}
    count = metric_value(text, "imgsearch_shadow_overlap_count", k="10")
    emit(
        {
            "bench": "shadow",
            "searches_per_round": len(photos),
            "rounds": args.rounds,
            "gateway_cpu_ms": per_search,
            "gateway_cpu_ms_rounds": cpu,
            "overhead_ms": overhead,
            "overhead_pct": 100 * overhead / per_search["shadow_0"] if per_search["shadow_0"] else float("nan"),
            "latency_p50_ms": {m: pct(latency[m])["p50"] for m in MODES},
            "shadow_requests": results,
            "shadow_overlap_at_10_mean": metric_value(text, "imgsearch_shadow_overlap_sum", k="10") / count
            if count
            else None,
            "machine": machine(),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
