"""End-to-end benchmark: the naive in-process loop vs the four services over HTTP, 1 to 16 clients.

    python bench/e2e.py [--quick] [--items 10000] [--client aiohttp|httpx] [--flag detector=--inference-threads=2 ...]

Starts detector, embedder, index and gateway as separate processes on 127.0.0.1 with the flags
`imgsearch up` gives them (plus `--cache-size 0` on the gateway, so no answer comes from its result
cache) on a Fashion-MNIST demo index, and sends the same photos (the real photos of the repository and
shop-style Fashion-MNIST renders, JPEG) through:
  1. the in-process pipeline, one thread (`InProcess`: the libraries called directly, onnxruntime with 1
     intra-op thread: the naive loop);
  2. the gateway, one client at a time (rounds interleaved with 1, so drift on a shared machine hits both;
     the client is aiohttp's, `load_client.py`);
  3. the gateway with 4, 8 and 16 concurrent clients.
Prints p50/p95/p99 per stage (the gateway's `timings_ms`, the in-process timers) and of the client-seen
latency, throughput, and CPU ms per request of every process. Last line, one JSON object:
`{"p1": e2e p50 / in-process p50 (one client), "p2": throughput at 8 clients / in-process throughput, ...}`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_models  # noqa: E402
from common import (  # noqa: E402
    arg_parser,
    demo_data,
    emit,
    index_version_dir,
    is_real,
    machine,
    pct,
    query_photos,
    start_stack,
    table,
)
from load_client import CLIENTS, Run, multipart, run_clients  # noqa: E402

STAGES = ("decode", "detect", "embed", "search", "total")


class InProcess:
    """detector + embedder + index reader in this process, one thread."""

    def __init__(self, version_dir: Path, threads: int = 1, gateway_decode: bool = False) -> None:
        from ann_index.serving.reader import IndexReader
        from detector import Detector
        from detector.multipose import MultiPoseEstimator
        from detector.pose import PoseEstimator
        from embedder import Embedder
        from services import defaults
        from services.common.settings import DetectorSettings, EmbedderSettings, GatewaySettings
        from services.detector.garments import side_pool

        det, emb = DetectorSettings(), EmbedderSettings()
        self.gw = GatewaySettings()
        self.detector = Detector(
            defaults.DEFAULT_DETECTOR_DIR,
            intra_threads=threads,
            inter_threads=1,
            score_threshold=det.score_threshold,
            iou_threshold=det.iou_threshold,
            max_detections=det.max_detections,
        )
        self.embedder = Embedder(defaults.DEFAULT_EMBEDDER_DIR, intra_threads=threads, batch_size=emb.max_batch_size)
        self.reader = IndexReader.open(version_dir, embedder_sha256=self.embedder.sha256, dim=self.embedder.dim)
        self.known = frozenset(self.reader.categories)
        self.limits = self.gw.uploads.decode_limits()
        # The same work as the services (issue 15): garments of people from the pose model, and only the
        # detections of a catalog kind searched (the gateway's split by the index's `kinds`).
        self.det_settings = det
        self.pose = PoseEstimator(defaults.MODELS_DIR / "movenet-lightning", intra_threads=threads, inter_threads=1)
        self.people = MultiPoseEstimator(
            defaults.MODELS_DIR / "movenet-multipose", intra_threads=threads, inter_threads=1
        )
        self.side = side_pool(2)  # as the detector service: the pose pass beside the detector, crops two at a time
        self.kinds = json.loads((version_dir / "manifest.json").read_text()).get("kinds") or None
        # The naive loop decodes at full size, then shrinks; `gateway_decode` decodes as the gateway does (a
        # large JPEG straight to about `forward_max_side` by DCT scaling), for photos where that decides the cost.
        self.gateway_decode = gateway_decode

    def search(self, data: bytes, k: int = 10) -> dict[str, float]:
        """One photo through the whole pipeline; the stage timings in ms."""
        from embedder.transforms import foreground_box
        from imgcore.image import decode, decode_image
        from services.common.boxes import clip_box
        from services.detector.garments import find_items
        from services.gateway.garments import categories_for, split_items
        from services.gateway.regions import Region
        from services.gateway.search import public_result

        t0 = time.perf_counter()
        if self.gateway_decode:
            forward = decode(data, self.limits, self.gw.search.forward_max_side).pixels
        else:
            forward = shrink(decode_image(data, self.limits), self.gw.search.forward_max_side)
        t1 = time.perf_counter()
        h, w = forward.shape[:2]
        regions = []
        items = find_items(self.detector, self.pose, self.people, forward, self.det_settings, self.side)
        for n, det in enumerate(items):
            box = det["box"]
            if box[2] - box[0] < self.gw.search.min_item_px or box[3] - box[1] < self.gw.search.min_item_px:
                continue
            region = Region(box=list(box), label=det["label"], category=det.get("category"), score=det["score"])
            region.detection, region.part_of = n, det.get("part_of")
            regions.append(region)
        regions.sort(key=lambda region: -float(region.score or 0.0))
        regions = split_items(regions, self.kinds, self.known, None)[0][: self.gw.search.max_items]
        t2 = time.perf_counter()
        categories: list[Any]
        if regions:
            vectors = self.embedder.embed(forward, [clip_box(r.box, w, h) for r in regions])
            categories = categories_for(regions, self.known, None)
        else:
            fg = foreground_box(forward)
            vectors = self.embedder.embed(forward, None if fg is None else [fg])
            categories = [None]
        t3 = time.perf_counter()
        rows: dict[Any, list[int]] = defaultdict(list)
        for row, cat in enumerate(categories):
            rows[tuple(cat) if isinstance(cat, list) else cat].append(row)
        results: list[list[dict[str, Any]]] = [[] for _ in categories]
        for cat, idx in rows.items():
            spec = list(cat) if isinstance(cat, tuple) else cat
            for row, hits in zip(idx, self.reader.query(vectors[idx], k, spec), strict=True):
                results[row] = [public_result(h.to_dict()) for h in hits]
        t4 = time.perf_counter()
        return {
            "decode": (t1 - t0) * 1e3,
            "detect": (t2 - t1) * 1e3,
            "embed": (t3 - t2) * 1e3,
            "search": (t4 - t3) * 1e3,
            "total": (t4 - t0) * 1e3,
            "items": float(len(categories)),
        }

    def close(self) -> None:
        self.reader.close()


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """As the gateway does before forwarding: at most `max_side` pixels wide or high (INTER_AREA)."""
    import cv2

    h, w = image.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (children excluded)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """CPU ms per request of each process between two snapshots."""
    return {name: (after[name] - before[name]) * 1e3 / max(requests, 1) for name in before}


def shuffled(n: int, rounds: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(i) for _ in range(rounds) for i in rng.permutation(n)]


def batch_stats(url: str) -> tuple[float, float]:
    """(sum, count) of the embedder's batch-size histogram."""
    text = httpx.get(url + "/metrics", timeout=5.0, trust_env=False).text
    got = {}
    for key in ("sum", "count"):
        m = re.search(rf"^imgsearch_embed_batch_size_{key} (\S+)$", text, re.M)
        got[key] = float(m.group(1)) if m else 0.0
    return got["sum"], got["count"]


def stage_rows(label: str, timings: dict[str, list[float]], client: list[float] | None) -> list[list[Any]]:
    rows = []
    for stage in STAGES:
        if timings.get(stage):
            p = pct(timings[stage])
            rows.append([label, stage, p["p50"], p["p95"], p["p99"]])
    if client is not None:
        p = pct(client)
        rows.append([label, "client-seen", p["p50"], p["p95"], p["p99"]])
    return rows


def parse_flags(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for item in items:
        name, _, flag = item.partition("=")
        out[name].extend(flag.split("=", 1) if flag.count("=") else [flag])
    return out


def main() -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer photos and rounds: under 5 minutes on 2 cores")
    ap.add_argument("--items", type=int, default=None, help="demo index size (default 10000; 5000 with --quick)")
    ap.add_argument("--fmnist", type=int, default=None, help="Fashion-MNIST photos (default 93; 33 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds of 1 vs 2 (default 5; 3 quick)")
    ap.add_argument("--clients", default="4,8,16", help="concurrency levels (default 4,8,16)")
    ap.add_argument(
        "--flag",
        action="append",
        default=[],
        metavar="SERVICE=--FLAG[=VALUE]",
        help="extra flag for one service, e.g. detector=--inference-threads=2 (repeatable)",
    )
    ap.add_argument(
        "--client", choices=CLIENTS, default="aiohttp", help="load client (default aiohttp; load_client.py)"
    )
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads in-process (default 1)")
    ap.add_argument(
        "--models", default="", help="also compare model sets side by side, e.g. fp32,int8 (bench/e2e_models.py)"
    )
    ap.add_argument(
        "--no-detectors", action="store_true", help="skip the real photos through nanodet-fp32 vs the default"
    )
    args = ap.parse_args()
    items = args.items or (5000 if args.quick else 10000)
    n_fmnist = args.fmnist if args.fmnist is not None else (33 if args.quick else 93)
    rounds = args.rounds or (3 if args.quick else 5)
    levels = [int(c) for c in args.clients.split(",") if c]
    t_start = time.monotonic()
    info_start = machine()

    data = demo_data(items)
    photos = query_photos(n_fmnist)
    bodies = [(name, multipart(name, raw)) for name, raw in photos]
    extra = parse_flags(args.flag)
    extra["gateway"] = ["--cache-size", "0", *extra.get("gateway", [])]
    stack = start_stack(data, extra=dict(extra))
    pids = {**stack.pids(), "bench": os.getpid()}
    try:
        inproc = InProcess(index_version_dir(data), threads=args.threads)
        for _, raw in photos:  # warm both sides: sessions, allocators, connection pools, page cache
            inproc.search(raw)
        run_clients(stack.gateway_url, bodies, 1, list(range(len(bodies))), client=args.client)

        local: dict[str, list[float]] = defaultdict(list)
        local_names: list[str] = []
        local_wall = 0.0
        one = Run(1)
        cpu_local = {name: 0.0 for name in pids}
        cpu_one = {name: 0.0 for name in pids}
        for r in range(rounds):
            order = shuffled(len(photos), 1, seed=r)
            before = cpu_snapshot(pids)
            t0 = time.perf_counter()
            for i in order:
                for stage, ms in inproc.search(photos[i][1]).items():
                    local[stage].append(ms)
                local_names.append(photos[i][0])
            local_wall += time.perf_counter() - t0
            mid = cpu_snapshot(pids)
            got = run_clients(stack.gateway_url, bodies, 1, order, client=args.client)
            after = cpu_snapshot(pids)
            for name in pids:
                cpu_local[name] += mid[name] - before[name]
                cpu_one[name] += after[name] - mid[name]
            one.wall_s += got.wall_s
            one.latency_ms += got.latency_ms
            one.names += got.names
            one.errors += got.errors
            one.first_error = one.first_error or got.first_error
            for stage, values in got.server.items():
                one.server[stage] += values
        inproc.close()
        n_local = len(local["total"])
        cpu = {
            "in-process": {k: v * 1e3 / n_local for k, v in cpu_local.items()},
            "1 client": {k: v * 1e3 / max(len(one.latency_ms), 1) for k, v in cpu_one.items()},
        }

        concurrent: dict[int, Run] = {}
        batches: dict[int, float] = {}
        for c in levels:
            order = shuffled(len(photos), max(2, rounds), seed=100 + c)
            s0, n0 = batch_stats(stack.url("embedder"))
            before = cpu_snapshot(pids)
            concurrent[c] = run_clients(stack.gateway_url, bodies, c, order, warmup=c, client=args.client)
            cpu[f"{c} clients"] = cpu_per_request(before, cpu_snapshot(pids), len(concurrent[c].latency_ms))
            s1, n1 = batch_stats(stack.url("embedder"))
            batches[c] = (s1 - s0) / max(n1 - n0, 1)
    finally:
        stack.close()

    local_tp = n_local / local_wall
    p_local = pct(local["total"])
    p_one = pct(one.latency_ms)
    rows = stage_rows("in-process", local, None) + stage_rows("1 client", one.server, one.latency_ms)
    for c, run in concurrent.items():
        rows += stage_rows(f"{c} clients", run.server, run.latency_ms)
    print(
        f"\n{len(photos)} photos ({sum(is_real(n) for n, _ in photos)} real, {n_fmnist} Fashion-MNIST), "
        f"index of {items} items, {rounds} interleaved rounds; latency in ms\n"
    )
    print(table(["phase", "stage", "p50", "p95", "p99"], rows))
    kinds, p1_kind = [], {}
    sides = (("in-process", local_names, local, local["total"]), ("1 client", one.names, one.server, one.latency_ms))
    for kind, want in (("real", True), ("fmnist", False)):
        p50s = {}
        for label, names, stages, seen in sides:
            mask = [is_real(n) == want for n in names]
            row = [pct([v for v, m in zip(stages[st], mask, strict=True) if m])["p50"] for st in STAGES]
            p50s[label] = pct([v for v, m in zip(seen, mask, strict=True) if m])["p50"]
            kinds.append([label, kind, *row, p50s[label], sum(mask)])
        p1_kind[kind] = round(p50s["1 client"] / p50s["in-process"], 3)
    print("\np50 ms by kind of photo (real: COCO scenes, detections; fmnist: one item, whole-image fallback)")
    print(table(["phase", "photos", *STAGES, "client-seen", "n"], kinds))
    for label, run in [("1 client", one), *((f"{c} clients", r) for c, r in concurrent.items())]:
        if run.errors:
            print(f"{label}: {run.errors} errors; first: {run.first_error}", file=sys.stderr)
    tp_rows = [["in-process", 1, local_tp, 1.0, float("nan"), 0]]
    tp_rows.append(["gateway", 1, one.throughput, one.throughput / local_tp, float("nan"), one.errors])
    for c, run in concurrent.items():
        tp_rows.append(["gateway", c, run.throughput, run.throughput / local_tp, batches[c], run.errors])
    print("\n" + table(["phase", "clients", "req/s", "÷ in-process", "mean embed batch", "errors"], tp_rows))
    names = list(pids)
    print(
        "\nCPU ms per request\n"
        + table(["phase", *names], [[label, *(v[n] for n in names)] for label, v in cpu.items()])
    )
    p2_level = 8 if 8 in concurrent else max(concurrent) if concurrent else None
    result: dict[str, Any] = {
        "bench": "e2e",
        "p1": round(p_one["p50"] / p_local["p50"], 3),
        "p2": round(concurrent[p2_level].throughput / local_tp, 3) if p2_level else None,
        "p1_by_kind": p1_kind,
        "inprocess_p50_ms": round(p_local["p50"], 2),
        "e2e_p50_ms": round(p_one["p50"], 2),
        "inprocess_rps": round(local_tp, 2),
        "rps": {str(c): round(r.throughput, 2) for c, r in concurrent.items()} | {"1": round(one.throughput, 2)},
        "p95_ms": {str(c): round(pct(r.latency_ms)["p95"], 1) for c, r in concurrent.items()},
        "errors": one.errors + sum(r.errors for r in concurrent.values()),
        "photos": len(photos),
        "items": items,
        "rounds": rounds,
        "quick": args.quick,
        "flags": args.flag,
        "client": args.client,
        "wall_s": round(time.monotonic() - t_start, 1),
        "machine": {**info_start, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
    }
    if args.models:  # issue 19: the same photos through one stack per model set, interleaved
        sets = e2e_models.parse_sets(args.models)
        load = functools.partial(run_clients, client=args.client)
        result["models"] = e2e_models.compare(sets, items, bodies, levels, rounds, extra, load)
        result["wall_s"] = round(time.monotonic() - t_start, 1)
    if not args.no_detectors:  # issue 31: the real photos at 8 clients, NanoDet-m fp32 vs the default detector
        load = functools.partial(run_clients, client=args.client)
        real = [body for body in bodies if is_real(body[0])]
        got = e2e_models.compare(["nanodet-fp32", "default"], items, real, [8], rounds, extra, load)
        result["detectors"] = got
        result["real_rps_ratio_vs_nanodet_fp32"] = got["rps_vs_first"]["8"]["default"]
        result["wall_s"] = round(time.monotonic() - t_start, 1)
    print()
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
