"""Soak: many searches through the gateway, watching every service's memory and the latency over time.

    python bench/soak.py [--searches 10000] [--clients 4] [--fmnist 500] [--bad-fraction 0.02]

Starts the four services as `imgsearch up` does (bench/common.py; gateway result cache off by default, so
every search runs detect -> embed -> query), then `--clients` threads send `--searches` searches: the real
photos of the repository and Fashion-MNIST test-split items rendered as shop photos, with k varied, plus a
small share of bad-input corpus files (refusals are part of the traffic). A sampler reads each service's
RSS from /proc every `--sample-s` seconds.

Reported after a warm-up (the first `--warmup` fraction of searches):
- RSS growth per service: RSS at the end vs RSS when the warm-up ended (target < 5 %);
- p99 drift per stage (gateway `timings_ms`: detect, embed, search, total) and of the client-seen latency:
  p99 of the last segment vs the first post-warm-up segment (target < 20 %).
Prints a table for people and, as the LAST line, one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, arg_parser, demo_data, emit, machine, pct, query_photos, start_stack, table  # noqa: E402

BAD = REPO / "tests" / "data" / "bad"
STAGES = ("detect", "embed", "search", "total")
RSS_TARGET_PCT, DRIFT_TARGET_PCT = 5.0, 20.0


@dataclass
class Done:
    """One finished search."""

    seq: int  # completion order
    status: int
    client_ms: float
    stages: dict[str, float]


def rss_kib(pid: int) -> int:
    """Resident set size of a process (VmRSS), KiB."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_ms(pid: int) -> float:
    """User + system CPU time a process has used so far, ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    """One reading of every service, taken every --sample-s seconds."""

    done: int  # searches finished so far
    rss_kib: dict[str, int]
    cpu_ms: dict[str, float]
    load1: float


def sample(pids: dict[str, int], done: int) -> Sample:
    return Sample(
        done, {n: rss_kib(p) for n, p in pids.items()}, {n: cpu_ms(p) for n, p in pids.items()}, os.getloadavg()[0]
    )


def bad_inputs() -> list[tuple[str, bytes]]:
    corpus = json.loads((BAD / "corpus.json").read_text())
    return [(name, (BAD / name).read_bytes()) for name, spec in sorted(corpus.items()) if spec["expect"] != "200"]


def plan(
    n: int, photos: list[tuple[str, bytes]], bad: list[tuple[str, bytes]], bad_fraction: float, seed: int
) -> list[tuple[str, bytes, int]]:
    """The (name, bytes, k) of every search, shuffled, the same for a given seed."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pool = bad if bad and rng.random() < bad_fraction else photos
        name, data = pool[int(rng.integers(len(pool)))]
        out.append((name, data, int(rng.integers(1, 21))))
    return out


class Soak:
    """Clients and the RSS sampler around one running stack."""

    def __init__(self, gateway: str, pids: dict[str, int], work: list[tuple[str, bytes, int]], sample_s: float):
        self.gateway = gateway
        self.pids = pids
        self.work = work
        self.sample_s = sample_s
        self.done: list[Done] = []
        self.samples: list[Sample] = []
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def _take(self) -> tuple[str, bytes, int] | None:
        with self._lock:
            if self._next >= len(self.work):
                return None
            self._next += 1
            return self.work[self._next - 1]

    def client(self) -> None:
        with httpx.Client(trust_env=False, timeout=60) as http:
            while (job := self._take()) is not None:
                name, data, k = job
                t0 = time.perf_counter()
                try:
                    resp = http.post(self.gateway + "/v1/search", params={"k": k}, files={"image": (name, data)})
                    status = resp.status_code
                    stages = resp.json().get("timings_ms", {}) if status == 200 else {}
                except httpx.HTTPError:
                    status, stages = 0, {}
                ms = (time.perf_counter() - t0) * 1e3
                with self._lock:
                    self.done.append(Done(len(self.done), status, ms, stages))

    def sampler(self) -> None:
        while not self._stop.is_set():
            self.samples.append(sample(self.pids, len(self.done)))
            self._stop.wait(self.sample_s)

    def run(self, clients: int) -> float:
        sampler = threading.Thread(target=self.sampler, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        threads = [threading.Thread(target=self.client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        self._stop.set()
        sampler.join()
        self.samples.append(sample(self.pids, len(self.done)))
        return elapsed


def rss_report(samples: list[Sample], warm_after: int) -> dict[str, dict[str, float]]:
    """Per service: RSS when the warm-up ended, half-way, at the end and its peak after warm-up (MiB), and the
    growth end vs warm-up and over the second half (a leak keeps growing; a warming cache levels off)."""
    after = [s for s in samples if s.done >= warm_after] or samples[-1:]
    mid = after[len(after) // 2]
    out = {}
    for name in samples[0].rss_kib:
        warm, half, end = after[0].rss_kib[name], mid.rss_kib[name], after[-1].rss_kib[name]
        out[name] = {
            "start_mib": samples[0].rss_kib[name] / 1024,
            "warm_mib": warm / 1024,
            "end_mib": end / 1024,
            "peak_mib": max(s.rss_kib[name] for s in after) / 1024,
            "growth_pct": 100.0 * (end - warm) / warm,
            "second_half_growth_pct": 100.0 * (end - half) / half,
        }
    return out


def _stage_ms(d: Done, stage: str) -> float:
    return d.client_ms if stage == "client" else d.stages.get(stage, float("nan"))


def segment_report(done: list[Done], samples: list[Sample], warm_after: int, segments: int) -> list[dict[str, Any]]:
    """Each post-warm-up segment (in completion order): p99 per stage of its successful searches, the CPU ms
    each service spent per search in it (its own speed, whatever else runs on the machine) and the load."""
    ordered = sorted(done, key=lambda d: d.seq)
    size = max(1, (len(ordered) - warm_after) // segments)
    out = []
    for i in range(segments):
        lo, hi = warm_after + i * size, warm_after + (i + 1) * size
        rows = [d for d in ordered[lo:hi] if d.status == 200]
        inside = [s for s in samples if lo <= s.done <= hi] or samples[-1:]
        first, last = inside[0], inside[-1]
        searches = max(1, last.done - first.done)
        out.append(
            {
                "searches": [lo, hi],
                "p99_ms": {st: pct([_stage_ms(d, st) for d in rows])["p99"] for st in (*STAGES, "client")},
                "cpu_ms_per_search": {n: (last.cpu_ms[n] - first.cpu_ms[n]) / searches for n in first.cpu_ms},
                "load1": float(np.mean([s.load1 for s in inside])),
            }
        )
    return out


def drift_report(segs: list[dict[str, Any]], done: list[Done], warm_after: int) -> dict[str, dict[str, float]]:
    """Per stage: p99 of the first and the last post-warm-up segment, and the drift in %."""
    ok = [d for d in done if d.seq >= warm_after and d.status == 200]
    out = {}
    for stage in (*STAGES, "client"):
        a, b = segs[0]["p99_ms"][stage], segs[-1]["p99_ms"][stage]
        out[stage] = {
            "p50_ms": pct([_stage_ms(d, stage) for d in ok])["p50"],
            "first_p99_ms": a,
            "last_p99_ms": b,
            "drift_pct": 100.0 * (b - a) / a,
        }
    return out


def main() -> int:
    parser = arg_parser(__doc__)
    parser.add_argument("--searches", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--items", type=int, default=3000, help="demo index size (FMNIST train items)")
    parser.add_argument("--fmnist", type=int, default=500, help="distinct shop photos from the FMNIST test split")
    parser.add_argument("--bad-fraction", type=float, default=0.02, help="share of bad-input corpus files")
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of searches counted as warm-up")
    parser.add_argument("--segments", type=int, default=10, help="post-warm-up segments for the p99 drift")
    parser.add_argument("--sample-s", type=float, default=2.0, help="RSS sampling period")
    parser.add_argument("--gateway-cache", type=int, default=0, help="gateway result cache size (0: off)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = demo_data(args.items)
    photos = query_photos(args.fmnist, seed=args.seed)
    work = plan(args.searches, photos, bad_inputs(), args.bad_fraction, args.seed)
    before = machine()
    stack = start_stack(data, extra={"gateway": ["--cache-size", str(args.gateway_cache)]})
    try:
        soak = Soak(stack.gateway_url, stack.pids(), work, args.sample_s)
        print(f"soak: {args.searches} searches, {args.clients} clients, {len(photos)} photos ...", file=sys.stderr)
        elapsed = soak.run(args.clients)
        alive = {name: svc.alive() for name, svc in stack.services.items()}
    finally:
        stack.close()

    report(args, soak, work, elapsed, alive, before)
    return 0


def report(
    args: argparse.Namespace,
    soak: Soak,
    work: list[tuple[str, bytes, int]],
    elapsed: float,
    alive: dict[str, bool],
    before: dict[str, Any],
) -> None:
    """Tables for people, then the JSON line."""
    warm_after = int(len(work) * args.warmup)
    statuses: dict[str, int] = {}
    for d in soak.done:
        statuses[str(d.status)] = statuses.get(str(d.status), 0) + 1
    rss = rss_report(soak.samples, warm_after)
    segs = segment_report(soak.done, soak.samples, warm_after, args.segments)
    drift = drift_report(segs, soak.done, warm_after)
    bad_names = {name for name, _ in bad_inputs()}
    bad_sent = sum(1 for name, _, _ in work if name in bad_names)
    server_errors = sum(n for code, n in statuses.items() if code == "0" or code.startswith("5"))
    worst_rss = max(r["growth_pct"] for r in rss.values())
    worst_drift = max(d["drift_pct"] for d in drift.values())
    names = list(rss)
    first_cpu, last_cpu = segs[0]["cpu_ms_per_search"], segs[-1]["cpu_ms_per_search"]
    cpu_drift = {n: 100.0 * (last_cpu[n] - first_cpu[n]) / first_cpu[n] for n in names}
    print(
        table(
            ["service", "start MiB", "after warm-up", "2nd-half growth %", "end MiB", "peak MiB", "growth %"],
            [
                [
                    n,
                    r["start_mib"],
                    r["warm_mib"],
                    r["second_half_growth_pct"],
                    r["end_mib"],
                    r["peak_mib"],
                    r["growth_pct"],
                ]
                for n, r in rss.items()
            ],
        )
    )
    print()
    print(
        table(
            ["stage", "p50 ms", "p99 first", "p99 last", "drift %"],
            [[s, d["p50_ms"], d["first_p99_ms"], d["last_p99_ms"], d["drift_pct"]] for s, d in drift.items()],
        )
    )
    print()
    print(
        table(
            ["searches", "p99 client ms", "load1", *(f"{n} CPU ms/search" for n in names)],
            [
                [
                    f"{g['searches'][0]}-{g['searches'][1]}",
                    g["p99_ms"]["client"],
                    g["load1"],
                    *(g["cpu_ms_per_search"][n] for n in names),
                ]
                for g in segs
            ],
        )
    )
    print(
        f"\n{len(soak.done)} searches in {elapsed:.0f}s ({len(soak.done) / elapsed:.1f}/s), statuses {statuses}, "
        f"{bad_sent} bad inputs sent, services alive at the end: {alive}"
    )
    print("CPU ms per search, last vs first segment (%): " + ", ".join(f"{n} {v:+.1f}" for n, v in cpu_drift.items()))
    emit(
        {
            "searches": len(soak.done),
            "clients": args.clients,
            "seconds": round(elapsed, 1),
            "per_second": round(len(soak.done) / elapsed, 2),
            "statuses": statuses,
            "bad_inputs_sent": bad_sent,
            "server_errors": server_errors,
            "alive": alive,
            "rss": rss,
            "rss_growth_pct_max": worst_rss,
            "p99": drift,
            "p99_drift_pct_max": worst_drift,
            "segments": segs,
            "cpu_ms_per_search_drift_pct": cpu_drift,
            "pass": worst_rss < RSS_TARGET_PCT
            and worst_drift < DRIFT_TARGET_PCT
            and server_errors == 0
            and all(alive.values()),
            "machine_before": before,
            "machine_after": machine(),
        }
    )


if __name__ == "__main__":
    raise SystemExit(main())
