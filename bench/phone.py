"""Phone-size photos (4032 px JPEGs, what shoppers upload) through the services vs in-process, one at a time.

    python bench/phone.py [--rounds 8] [--items 10000] [--side 4032] [--flag gateway=--speculate-max-inflight=0 ...]

bench/e2e.py's photos are at most 773 px, so the costs that grow with a photo's pixels do not show there: the
upload's read, the decode, the forwarded pixels' hops (`forward_max_side` 2048: 8-9 MB of RGB each to the detector
and the embedder), and the embedder's work on them. Here the repository's real photos and one product shot are
enlarged to `--side` px (Lanczos), given a faint sensor grain so that they compress like camera JPEGs (q90,
1.6-2.0 MB at 4032 px), and searched in interleaved rounds: in-process (`e2e.InProcess`, decoding as the gateway does, a
large JPEG DCT-scaled straight to ~2016 px) and through the four services at one client (gateway result cache
off). Prints per photo the p50 of both, and of each stage in-process and in the gateway's `timings_ms` (there
the embed of a photo searched whole is the speculative one, beside detection); last line one JSON object,
`{"phone_ratio": median over photos of served p50 / in-process p50, ...}`. A measurement, not a target.
"""

from __future__ import annotations

import io
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arg_parser, demo_data, emit, index_version_dir, machine, median, start_stack, table  # noqa: E402
from e2e import STAGES, InProcess, parse_flags  # noqa: E402
from load_client import multipart, run_clients  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SOURCES = (
    "tests/data/photos/person.jpg",
    "tests/data/photos/dog.jpg",
    "tests/data/photos/people/park.jpg",
    "services/static/samples/shop-ankle-boot.jpg",
)


def phone_jpeg(path: Path, side: int, seed: int) -> bytes:
    """The photo enlarged to `side` px on its longer side, with grain, as a q90 JPEG."""
    image = Image.open(path).convert("RGB")
    scale = side / max(image.size)
    big = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    grain = np.random.default_rng(seed).normal(0.0, 3.0, (big.height, big.width, 3))
    pixels = np.clip(np.asarray(big, np.float32) + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def main() -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--items", type=int, default=10000, help="demo index size")
    ap.add_argument("--side", type=int, default=4032, help="the photos' longer side in pixels")
    ap.add_argument("--flag", action="append", default=[], metavar="SERVICE=--FLAG[=VALUE]")
    args = ap.parse_args()
    info_start = machine()
    photos = [(Path(p).name, phone_jpeg(REPO / p, args.side, n)) for n, p in enumerate(SOURCES)]
    bodies = [(name, multipart(name, raw)) for name, raw in photos]
    data = demo_data(args.items)
    extra = parse_flags(args.flag)
    extra["gateway"] = ["--cache-size", "0", *extra.get("gateway", [])]
    stack = start_stack(data, extra=dict(extra))
    local: dict[str, list[float]] = defaultdict(list)
    served: dict[str, list[float]] = defaultdict(list)
    stages: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    local_stages: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    try:
        inproc = InProcess(index_version_dir(data), gateway_decode=True)
        for _, raw in photos:  # warm both sides
            inproc.search(raw)
        run_clients(stack.gateway_url, bodies, 1, list(range(len(bodies))))
        for r in range(args.rounds):
            order = [int(i) for i in np.random.default_rng(r).permutation(len(photos))]
            for i in order:
                t0 = time.perf_counter()
                timings = inproc.search(photos[i][1])
                local[photos[i][0]].append((time.perf_counter() - t0) * 1e3)
                for stage in STAGES[:-1]:
                    local_stages[photos[i][0]][stage].append(timings[stage])
            got = run_clients(stack.gateway_url, bodies, 1, order)
            for n, (name, ms) in enumerate(zip(got.names, got.latency_ms, strict=True)):
                served[name].append(ms)
                for stage in STAGES[:-1]:
                    stages[name][stage].append(got.server[stage][n])
            if got.errors:
                print(f"round {r}: {got.errors} errors; first: {got.first_error}", file=sys.stderr)
        inproc.close()
    finally:
        stack.close()

    rows, ratios = [], {}
    for name, raw in photos:
        ratios[name] = round(median(served[name]) / median(local[name]), 3)
        rows.append(
            [name, round(len(raw) / 1e6, 2), median(local[name]), median(served[name]), ratios[name]]
            + [f"{median(local_stages[name][st]):.1f} / {median(stages[name][st]):.1f}" for st in STAGES[:-1]]
        )
    print(f"\n{len(photos)} photos at {args.side} px, {args.rounds} interleaved rounds, p50 ms\n")
    print(table(["photo", "MB", "in-process", "served", "ratio", *(f"{s} (in / gw)" for s in STAGES[:-1])], rows))
    emit(
        {
            "bench": "phone",
            "phone_ratio": round(median(list(ratios.values())), 3),
            "ratio_by_photo": ratios,
            "p50_ms": {name: {"in_process": median(local[name]), "served": median(served[name])} for name, _ in photos},
            "side": args.side,
            "rounds": args.rounds,
            "flags": args.flag,
            "machine": {**info_start, "loadavg_end": machine()["loadavg"]},
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
