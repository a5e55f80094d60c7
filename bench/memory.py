"""Memory of index-service workers on the same memory-mapped index (proportional set size).

    python bench/memory.py [--items 200000] [--queries 2000] [--prefault both|on|off]

Builds (once, cached under /tmp/imgsearch-bench) a synthetic index of `--items` clustered 128-d vectors
with the real builder, quality gate and publisher (`ann_index.build.rebuild.build_version` + `publish_version`;
10 categories, so a global and 10 per-category annoy files as in production), then measures, one after
another on one shared --local-dir (so all map the same files):
  - 1 `imgsearch serve index` process;
  - 4 separate `imgsearch serve index` processes (how workers were run before: each its own heap);
  - 1 `imgsearch serve index --workers 4`: a parent that imports the app, loads the index and forks 4
    workers (services/index/workers.py); the parent and the 4 workers are counted.
Each worker is warmed with `--queries` queries over HTTP (for the forked workers: the same number per
worker, each request on a new connection, so the kernel spreads them), then Pss is read from
/proc/PID/smaps_rollup. A page shared by 4 processes counts a quarter in each one's Pss, so the sum over
processes is the real memory.
Last line, one JSON object: `{"p5": Pss of 1 + 4 forked workers / Pss of 1 process, ...}` (prefault on, the
steady state of a server whose index is fully paged in; "p5_no_prefault" after warm-up queries only;
"p5_separate_processes": 4 separate processes / 1).
"""

from __future__ import annotations

import base64
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, _locked, arg_parser, emit, machine, pss_kib, table  # noqa: E402

from services.stack import ServiceProcess, free_port, start_service, stop_all  # noqa: E402

DIM = 128
Run = dict[str, Any]
Result = tuple[bool, Run, Run, Run]  # prefault; 1 process, 4 processes, 1 + 4 forked workers


@dataclass
class SyntheticEmbedder:
    """Stands in for the embedder in the manifest (the index service is started without a sha256 pin)."""

    dim: int = DIM
    name: str = "synthetic"
    version: str = "0"
    sha256: str = "5" * 64
    metric: str = "angular"
    card: dict[str, Any] = field(default_factory=lambda: {"input": {"size": [112, 112]}})


def clustered(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around n/400 centres, each spread over its own 6-d subspace; category = centre % 10."""
    rng = np.random.default_rng(seed)
    n_centres = max(10, n // 400)
    centres = rng.standard_normal((n_centres, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spans = rng.standard_normal((n_centres, 6, dim)).astype(np.float32) / math.sqrt(dim)
    owner = rng.integers(0, n_centres, n)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 50_000):
        o = owner[lo : lo + 50_000]
        z = rng.standard_normal((len(o), 6)).astype(np.float32) * 0.8
        x = centres[o] + np.einsum("nk,nkd->nd", z, spans[o]) + 0.02 * rng.standard_normal((len(o), dim))
        out[lo : lo + len(o)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, (owner % 10).astype(np.int64)


def synthetic_store(items: int, seed: int = 7) -> Path:
    """A published index store (CURRENT + versions/) of `items` synthetic vectors; built once."""
    from ann_index.build.rebuild import RebuildOptions, build_version
    from ann_index.items import IndexItem
    from ann_index.version.publish import publish_version
    from imgcore.fmnist import CLASS_NAMES
    from imgcore.storage import open_store

    root = CACHE / f"synthetic-{items}-{DIM}"
    with _locked(root.name):
        if (root / "CURRENT").is_file():
            return root
        t0 = time.monotonic()
        print(f"building a synthetic index of {items} items into {root} ...", file=sys.stderr, flush=True)
        vectors, cats = clustered(items, DIM, seed)
        index_items = [
            IndexItem(
                f"syn-{i:07d}",
                CLASS_NAMES[c],
                f"{CLASS_NAMES[c]} #{i}",
                f"file:///nonexistent/{i}.png",
                {"price": 990 + (i * 37) % 29000},
            )
            for i, c in enumerate(cats)
        ]
        work = Path(tempfile.mkdtemp(prefix="synthetic-", dir=CACHE))
        try:
            opts = RebuildOptions(workers=2, progress=False, gate_queries=500)
            build_version(vectors, index_items, work, SyntheticEmbedder(), opts)
            root.mkdir(parents=True, exist_ok=True)
            with open_store(root.as_uri()) as store:
                publish_version(store, work, keep=1)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"  built in {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    return root


def warm(url: str, queries: int, seed: int, spread: bool = False) -> float:
    """`queries` queries (16 per request, k=10); returns the mean ms per request. `spread`: a new connection
    per request, so the kernel spreads them over the forked workers of one port."""
    rng = np.random.default_rng(seed)
    t0, sent = time.perf_counter(), 0
    headers = {"connection": "close"} if spread else {}
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        for _ in range(0, queries, 16):
            v = rng.standard_normal((16, DIM)).astype("<f4")
            body = {"vectors_b64": base64.b64encode(v.tobytes()).decode(), "dim": DIM, "k": 10}
            client.post(url + "/v1/query", json=body, headers=headers).raise_for_status()
            sent += 1
    return (time.perf_counter() - t0) * 1e3 / max(sent, 1)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def measure_forked(
    store: Path, local: Path, workers: int, prefault: bool, queries: int, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """One `imgsearch serve index --workers N`: the parent and its N forked workers, warmed as `measure`."""
    args = ["--index-uri", store.as_uri(), "--local-dir", str(local), "--poll-seconds", "0"]
    args += ["--prefault"] if prefault else ["--no-prefault"]
    proc = start_service(
        "index", free_port(), args=[*args, "--workers", str(workers)], env=env, log_path=local.parent / "index.log"
    )
    try:
        proc.wait_ready(300)
        ms = warm(proc.url, queries * workers, seed=0, spread=True)
        time.sleep(0.5)
        pids = [proc.proc.pid, *children(proc.proc.pid)]
        mem = [pss_kib(pid) for pid in pids]
    finally:
        stop_all([proc])
    total = {key: sum(m.get(key, 0) for m in mem) for key in ("Pss", "Pss_Anon", "Pss_File", "Rss")}
    return {
        "workers": workers,
        "prefault": prefault,
        "ms_per_request": ms,
        **total,
        "per_worker_pss": [m["Pss"] for m in mem],
    }


def measure(
    store: Path, local: Path, workers: int, prefault: bool, queries: int, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Start `workers` index services, warm them, read their smaps_rollup; stop them."""
    args = ["--index-uri", store.as_uri(), "--local-dir", str(local), "--poll-seconds", "0"]
    args += ["--prefault"] if prefault else ["--no-prefault"]
    procs: list[ServiceProcess] = []
    try:
        for _ in range(workers):
            procs.append(start_service("index", free_port(), args=args, env=env, log_path=local.parent / "index.log"))
            procs[-1].wait_ready(300)  # one after another: the first one syncs the version for all
        ms = [warm(p.url, queries, seed=i) for i, p in enumerate(procs)]
        time.sleep(0.5)
        mem = [pss_kib(p.proc.pid) for p in procs]
    finally:
        stop_all(procs)
    total = {key: sum(m.get(key, 0) for m in mem) for key in ("Pss", "Pss_Anon", "Pss_File", "Rss")}
    return {
        "workers": workers,
        "prefault": prefault,
        "ms_per_request": float(np.mean(ms)),
        **total,
        "per_worker_pss": [m["Pss"] for m in mem],
    }


def main() -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--items", type=int, default=200_000, help="synthetic index size (default 200000)")
    ap.add_argument("--queries", type=int, default=2000, help="warm-up queries per worker (default 2000)")
    ap.add_argument("--prefault", choices=("both", "on", "off"), default="both")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment of the workers")
    args = ap.parse_args()
    info = machine()
    store = synthetic_store(args.items)
    version = (store / "CURRENT").read_text().strip()
    files_mib = sum(p.stat().st_size for p in (store / "versions" / version).iterdir()) / 2**20
    local = Path(tempfile.mkdtemp(prefix="memory-", dir=CACHE)) / "index-cache"
    env = dict(item.split("=", 1) for item in args.env)
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.prefault]
    results = []
    try:
        for prefault in modes:
            one = measure(store, local, 1, prefault, args.queries, env)
            four = measure(store, local, 4, prefault, args.queries, env)
            forked = measure_forked(store, local, 4, prefault, args.queries, env)
            results.append((prefault, one, four, forked))
    finally:
        shutil.rmtree(local.parent, ignore_errors=True)
    report(results, args, files_mib, env, info)
    return 0


def report(results: list[Result], args: Any, files_mib: float, env: dict[str, str], info: dict) -> None:
    layouts = ("1 process", "4 processes", "1 + 4 forked")
    rows = []
    for prefault, *runs in results:
        for layout, r in zip(layouts, runs, strict=True):
            mib = [r[k] / 1024 for k in ("Pss", "Pss_File", "Pss_Anon", "Rss")]
            rows.append([("on" if prefault else "off"), layout, *mib, r["ms_per_request"]])
    print(
        f"\nindex of {args.items} x {DIM}-d items: {files_mib:.0f} MiB of files; {args.queries} warm-up queries "
        "per worker; MiB summed over the processes\n"
    )
    print(table(["prefault", "workers", "Pss", "Pss file", "Pss anon", "Rss", "ms/request"], rows))
    forked = {p: f["Pss"] / one["Pss"] for p, one, _, f in results}
    separate = {p: four["Pss"] / one["Pss"] for p, one, four, _ in results}
    anon = {p: (f["Pss_Anon"] - one["Pss_Anon"]) / 4 / 1024 for p, one, _, f in results}
    for p in forked:
        print(
            f"prefault {'on' if p else 'off'}: 4 forked workers / 1 process = {forked[p]:.3f} "
            f"(4 separate processes: {separate[p]:.3f}); anon memory added per forked worker {anon[p]:.1f} MiB"
        )
    print()

    def key(p: bool) -> str:
        return "on" if p else "off"

    emit(
        {
            "bench": "memory",
            "p5": round(forked[True], 3) if True in forked else None,
            "p5_no_prefault": round(forked[False], 3) if False in forked else None,
            "p5_separate_processes": {key(p): round(v, 3) for p, v in separate.items()},
            "items": args.items,
            "index_files_mib": round(files_mib, 1),
            "anon_mib_per_forked_worker": {key(p): round(v, 1) for p, v in anon.items()},
            "pss_mib": {
                key(p): {name: round(r["Pss"] / 1024, 1) for name, r in zip(layouts, runs, strict=True)}
                for p, *runs in results
            },
            "env": env,
            "machine": info,
        }
    )


if __name__ == "__main__":
    raise SystemExit(main())
