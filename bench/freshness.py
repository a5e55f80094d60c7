"""Benchmark: freshness between rebuilds (issue 17): change lag on two replicas, query latency vs fresh items.

1. Lag. Two index replicas (real `imgsearch serve index` processes, the default 1 s change poll) follow a
   private copy of the demo index store. `--batches` change batches, each 5 catalog images under
   new ids plus one delete of a served item, are applied one every `--interval` s through the same code as
   `imgsearch items apply` (real embedder). For each batch and replica: seconds from the change object's
   write (its written_at) until the replica's /readyz reports it applied (polled every 50 ms), for upsert
   batches and delete batches alike; plus each replica's own imgsearch_index_change_lag_seconds histogram.
2. Query latency with 0, 10 k, 100 k and 300 k fresh items: the demo version's reader with a fresh index of
   that many items (random unit vectors spread over its categories; a tenth of the built items hidden as
   deleted), one query vector, k=10, global and within one category, in process (the HTTP hop is the same
   for all), measured side by side.

The last line of output is one JSON object.

    nice -n 10 python bench/freshness.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, arg_parser, demo_data, emit, index_version_dir, machine, pct, table  # noqa: E402

from ann_index.build.embedding import RebuildOptions  # noqa: E402
from ann_index.changes.apply import apply_changes  # noqa: E402
from ann_index.serving.fresh import FreshIndex  # noqa: E402
from ann_index.serving.fresh_view import FreshView  # noqa: E402
from ann_index.serving.reader import IndexReader  # noqa: E402
from ann_index.version.changes import ChangeBatch, Delete, Upsert  # noqa: E402
from embedder import Embedder  # noqa: E402
from services.defaults import DEFAULT_EMBEDDER_DIR  # noqa: E402
from services.stack import ServiceProcess, embedder_sha256, free_port, start_service  # noqa: E402

FRESH_SIZES = (0, 10_000, 100_000, 300_000)
UPSERTS = 5  # items per upsert batch
DEMO_ITEMS = 3000  # the demo index the tests and e2e bench use too


def _replica(store: Path, root: Path, name: str) -> ServiceProcess:
    args = ["--index-uri", store.as_uri(), "--local-dir", str(root / name), "--embedder-sha256", str(embedder_sha256())]
    svc = start_service("index", free_port(), args=args, log_path=root / f"{name}.log")
    svc.wait_ready(180)
    return svc


def _watch(svc: ServiceProcess, seen: dict[int, float], stop: threading.Event) -> None:
    """Record when the replica first reports each change sequence number applied."""
    with httpx.Client(trust_env=False, timeout=5) as client:
        while not stop.is_set():
            try:
                seq = int(client.get(svc.url + "/readyz").json()["index"]["changes"]["seq"])
            except (httpx.HTTPError, KeyError, ValueError):
                seq = 0
            now = time.time()
            for s in range(1, seq + 1):
                seen.setdefault(s, now)
            time.sleep(0.05)


def _batches(data: Path, work: Path, n: int, upserts: int) -> list[Path]:
    """Change files beside a copy of the catalog's images: odd batches upsert, even ones delete (plus one)."""
    rows = [json.loads(line) for line in (data / "catalog" / "catalog.jsonl").read_text().splitlines()]
    shutil.copytree(data / "catalog" / "images", work / "images")
    files = []
    for b in range(n):
        picked = rows[b * upserts : (b + 1) * upserts] if b % 2 == 0 else []
        lines = [{**r, "op": "upsert", "item_id": f"bench-{b}-{r['item_id']}"} for r in picked]
        lines.append({"op": "delete", "item_id": rows[-1 - b]["item_id"]})
        path = work / f"batch-{b:03d}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        files.append(path)
    return files


def _lag_histogram(svc: ServiceProcess) -> dict[str, float]:
    text = httpx.get(svc.url + "/metrics", trust_env=False).text
    out = {}
    for line in text.splitlines():
        if line.startswith("imgsearch_index_change_lag_seconds_bucket"):
            out[line.split('le="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out


def measure_lag(data: Path, batches: int, upserts: int, interval: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fresh-", dir=CACHE))
    try:
        store = Path(shutil.copytree(data / "index", work / "store"))
        replicas = [_replica(store, work, "a"), _replica(store, work, "b")]
        seen: list[dict[int, float]] = [{}, {}]
        stop = threading.Event()
        watchers = [threading.Thread(target=_watch, args=(r, s, stop)) for r, s in zip(replicas, seen, strict=True)]
        for t in watchers:
            t.start()
        embedder = Embedder(DEFAULT_EMBEDDER_DIR, allow_spinning=False)
        opts = RebuildOptions(progress=False)
        written: dict[int, tuple[float, str]] = {}
        for path in _batches(data, work, batches, upserts):
            applied = apply_changes(str(path), store.as_uri(), embedder, opts)
            written[applied.seq] = (applied.written_at, "upsert" if applied.upserts else "delete")
            time.sleep(interval)
        time.sleep(3.0)
        stop.set()
        for t in watchers:
            t.join()
        lags: dict[str, list[float]] = {"upsert": [], "delete": []}
        for replica_seen in seen:
            for seq, (at, kind) in written.items():
                if seq in replica_seen:
                    lags[kind].append(replica_seen[seq] - at)
        missed = sum(1 for s in seen for seq in written if seq not in s)
        hist = {name: _lag_histogram(r) for name, r in zip("ab", replicas, strict=True)}
        for r in replicas:
            r.stop()
        return {"lag_s": {kind: pct(v) for kind, v in lags.items()}, "missed": missed, "histogram": hist}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fresh(reader: IndexReader, n: int, rng: np.random.Generator) -> FreshIndex:
    fresh = FreshIndex(reader.dim)
    cats = list(reader.categories)
    hidden = [Delete(f"fmnist-train-{i:05d}") for i in range(0, reader.count, 10)]
    rows: list[Upsert | Delete] = list(hidden)
    vecs = rng.normal(size=(n, reader.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rows += [Upsert(f"f{i}", cats[i % len(cats)], "t", "file:///x.png", {}, vecs[i]) for i in range(n)]
    fresh.apply(ChangeBatch(reader.version, 1, time.time(), "bench/1", "", reader.dim, rows))
    return fresh


def measure_latency(data: Path, queries: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    out = []
    with IndexReader.open(index_version_dir(data), embedder_sha256=None, dim=None, prefault=True) as reader:
        category = next(iter(reader.categories))
        qs = rng.normal(size=(queries, reader.dim)).astype(np.float32)
        for n in FRESH_SIZES:
            view = FreshView(reader, _fresh(reader, n, rng) if n else FreshIndex(reader.dim))
            row: dict[str, Any] = {"fresh_items": n}
            for label, cat in (("global", None), ("category", category)):
                times = []
                for q in qs:
                    t0 = time.perf_counter()
                    view.query(q[None, :], 10, cat)
                    times.append((time.perf_counter() - t0) * 1e3)
                row[label] = pct(times)
            out.append(row)
    return out


def report(lag: dict[str, Any], latency: list[dict[str, Any]]) -> None:
    rows = [[kind, v["n"], v["p50"], v["p95"], v["p99"]] for kind, v in lag["lag_s"].items()]
    print(table(["change", "n", "lag p50 s", "p95 s", "p99 s"], rows))
    for name, hist in lag["histogram"].items():
        print(f"replica {name} imgsearch_index_change_lag_seconds (cumulative): {hist}")
    base = {label: latency[0][label]["p50"] for label in ("global", "category")}
    cells = []
    for r in latency:
        g, c = r["global"], r["category"]
        cells.append([r["fresh_items"], g["p50"], g["p95"], g["p50"] / base["global"], c["p50"], c["p95"]])
        cells[-1].append(c["p50"] / base["category"])
    print(table(["fresh items", "global p50 ms", "p95 ms", "x 0", "category p50 ms", "p95 ms", "x 0"], cells))


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--batches", type=int, default=40, help="change batches for the lag (default 40)")
    parser.add_argument("--interval", type=float, default=0.7, help="seconds between batches (default 0.7)")
    parser.add_argument("--queries", type=int, default=300, help="queries per latency cell (default 300)")
    args = parser.parse_args()
    data = demo_data(DEMO_ITEMS)
    lag = measure_lag(data, args.batches, UPSERTS, args.interval)
    latency = measure_latency(data, args.queries)
    report(lag, latency)
    emit({"lag": lag, "latency": latency, "machine": machine()})


if __name__ == "__main__":
    main()
