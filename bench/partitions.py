"""One index vs the same catalog as N partitions behind the gateway's scatter-gather, side by side (issue 16).

    python bench/partitions.py [--partitions 4] [--queries 200] [--rounds 3]

The demo catalog's embedded rows (tests/helpers/partitions.py) are built, gated and published twice through the
real build path: as one index (today's layout) and as N partitions. Each is served by real processes (one
index; N `serve index --partition I`) behind its own gateway. In interleaved rounds the same catalog items are
looked up through both gateways (`/v1/items/{id}/similar`, k=10: item from its partition, vector searched in
all of them): recall@10 against exact search over the whole catalog (item itself left out, ties tolerated),
category P@10 (hits of the item's own category), latency p50/p99 and gateway CPU per request.
Also measured: bytes per item of a built version (annoy files + vectors memory-mapped; metadata, thumbnails
on disk), the input of the capacity table in docs/deploy.md, which this script prints too.
Last line, one JSON object.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import arg_parser, emit, machine, median, pct, table  # noqa: E402
from e2e import cpu_seconds  # noqa: E402

from services.stack import ServiceProcess, free_port, start_service, stop_all  # noqa: E402
from tests.helpers.partitions import Rows, demo_rows, publish_partitioned, start_partitions  # noqa: E402

K = 10
GIB = 1024**3


def version_bytes(store: Path) -> dict[str, float]:
    """Bytes per item of the published version: mapped (annoy + vectors) and on disk (everything)."""
    version = (store / "CURRENT").read_text().strip()
    files = [p for p in (store / "versions" / version).rglob("*") if p.is_file()]
    manifest = json.loads((store / "versions" / version / "manifest.json").read_text())
    mapped = sum(p.stat().st_size for p in files if p.suffix in (".ann", ".npy"))
    disk = sum(p.stat().st_size for p in files)
    return {"mapped": mapped / manifest["count"], "disk": disk / manifest["count"], "search_k": manifest["search_k"]}


def exact_top(rows: Rows) -> tuple[np.ndarray, dict[str, int]]:
    vecs = rows.vectors / np.linalg.norm(rows.vectors, axis=1, keepdims=True)
    return vecs, {it.item_id: i for i, it in enumerate(rows.items)}


def measure(client: httpx.Client, base: str, ids: list[str], rows: Rows) -> dict[str, Any]:
    """Recall@10, category P@10, latencies (ms) of one pass over `ids` through one gateway."""
    vecs, pos = exact_top(rows)
    recalls, precisions, latencies = [], [], []
    for item_id in ids:
        t0 = time.perf_counter()
        body = client.get(f"{base}/v1/items/{item_id}/similar", params={"k": K}).raise_for_status().json()
        latencies.append((time.perf_counter() - t0) * 1e3)
        assert "partial" not in body, body
        q = pos[item_id]
        sims = vecs @ vecs[q]
        sims[q] = -np.inf
        kth = np.sort(sims)[-K]
        found = [pos[h["item_id"]] for h in body["results"]]
        recalls.append(sum(1 for f in found if sims[f] >= kth - 1e-5) / K)
        precisions.append(sum(1 for f in found if rows.items[f].category == rows.items[q].category) / K)
    return {"recall": recalls, "precision": precisions, "latency": latencies}


def start_gateway(index_urls: str, root: Path, name: str) -> ServiceProcess:
    args = ["--index-url", index_urls, "--cache-size", "0"]
    return start_service("gateway", free_port(), args=args, log_path=root / f"{name}.log")


def capacity_rows(per_item: float, pod_gib: float, replicas: int) -> list[list[str]]:
    """Partitions, pods and memory per partition for 1 M .. 1 B items, from measured mapped bytes per item."""
    out = []
    for items in (10**6, 10**7, 10**8, 10**9):
        total = items * per_item / GIB
        parts = max(1, int(np.ceil(total / pod_gib)))
        out.append([f"{items:,}", f"{total:,.1f}", str(parts), f"{total / parts:.1f}", str(parts * replicas)])
    return out


def main() -> int:
    parser = arg_parser(__doc__)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pod-gib", type=float, default=12.0, help="index bytes one partition pod may map")
    args = parser.parse_args()
    rows = demo_rows()
    root = Path(tempfile.mkdtemp(prefix="bench-partitions-"))
    stores = {"one": root / "one", "parts": root / "parts"}
    for mode, n in (("one", 1), ("parts", args.partitions)):
        stores[mode].mkdir()
        publish_partitioned(stores[mode], n, rows=rows)
    sizes = {mode: version_bytes(store) for mode, store in stores.items()}
    procs: list[ServiceProcess] = []
    try:
        one_args = ["--index-uri", stores["one"].as_uri(), "--local-dir", str(root / "one-cache")]
        single = start_service("index", free_port(), args=one_args, log_path=root / "one.log")
        procs.append(single)
        single.wait_ready(120)
        parts = start_partitions(stores["parts"], args.partitions, root)
        procs += parts
        gateways = {"one": start_gateway(single.url, root, "gw-one"),
                    "parts": start_gateway(",".join(p.url for p in parts), root, "gw-parts")}  # fmt: skip
        procs += gateways.values()
        for gw in gateways.values():
            wait_routes(gw)
        results = run_rounds(gateways, rows, args.queries, args.rounds)
    finally:
        stop_all(procs)
    return report(results, sizes, args)


def wait_routes(gateway: ServiceProcess) -> None:
    """The gateway answers item routes (its readiness also wants a detector and embedder, not run here)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(gateway.url + "/livez", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{gateway.url} never came up:\n{gateway.log_tail()}")


def run_rounds(gateways: dict[str, ServiceProcess], rows: Rows, queries: int, rounds: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    ids = [rows.items[i].item_id for i in rng.choice(len(rows.items), size=queries, replace=False)]
    acc: dict[str, dict[str, list[float]]] = {
        m: {"recall": [], "precision": [], "latency": [], "cpu": []} for m in gateways
    }
    with httpx.Client(timeout=10, trust_env=False) as client:
        for mode in gateways:  # warm-up: connections, page cache
            measure(client, gateways[mode].url, ids[:20], rows)
        for r in range(rounds):
            for mode in list(gateways)[:: 1 if r % 2 == 0 else -1]:  # alternate the order: drift hits both
                pid = gateways[mode].proc.pid
                c0 = cpu_seconds(pid)
                got = measure(client, gateways[mode].url, ids, rows)
                acc[mode]["cpu"].append((cpu_seconds(pid) - c0) * 1e3 / len(ids))
                for key in ("recall", "precision", "latency"):
                    acc[mode][key] += got[key]
    return acc


def report(acc: dict[str, Any], sizes: dict[str, dict[str, float]], args: Any) -> int:
    summary = {
        mode: {
            "recall_at_10": round(float(np.mean(a["recall"])), 4),
            "category_p_at_10": round(float(np.mean(a["precision"])), 4),
            "p50_ms": round(pct(a["latency"])["p50"], 2),
            "p99_ms": round(pct(a["latency"])["p99"], 2),
            "gateway_cpu_ms": round(median(a["cpu"]), 3),
            "search_k": sizes[mode]["search_k"],
        }
        for mode, a in acc.items()
    }
    one, parts = summary["one"], summary["parts"]
    added = max(args.partitions - 1, 1)
    fan_out = {
        "p50_ms_per_added_partition": round((parts["p50_ms"] - one["p50_ms"]) / added, 3),
        "gateway_cpu_ms_per_added_partition": round((parts["gateway_cpu_ms"] - one["gateway_cpu_ms"]) / added, 3),
    }
    head = ["layout", "recall@10", "cat P@10", "p50 ms", "p99 ms", "gw CPU ms/req", "search_k"]
    names = {"one": "1 index", "parts": f"{args.partitions} partitions"}
    print(table(head, [[names[m], *map(str, s.values())] for m, s in summary.items()]))
    per_item = sizes["one"]["mapped"]
    print(f"\nbytes per item: mapped {per_item:.0f}, on disk {sizes['one']['disk']:.0f}; fan-out {fan_out}")
    cap_head = ["items", "index GiB", "partitions", "GiB/partition", "pods (2 replicas)"]
    print(table(cap_head, capacity_rows(per_item, args.pod_gib, 2)))
    emit({
        "summary": summary, "fan_out": fan_out, "bytes_per_item": {k: round(v, 1) for k, v in sizes["one"].items()},
        "merged_recall_not_below_single": parts["recall_at_10"] >= one["recall_at_10"],
        "same_search_k": one["search_k"] == parts["search_k"], "machine": machine(),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
