"""First-request latency of the model services with and without warm-up before readiness.

    python bench/warmup.py [--rounds 3] [--after 10] [--models fp32|int8]

Each round starts the detector and the embedder (`imgsearch serve`, the repository's models) twice, once
with `--no-warm-up` and once with `--warm-up` (order alternating by round), waits for /readyz, then
sends the same real photo: the detector one `POST /v1/detect`, the embedder one `POST /v1/embed` with
the photo's detected boxes (a batch shape the service has not run before, unless warmed up). Measured:
the client-seen latency of the first request and the median of the next `--after`. Last line, JSON:
per service and mode the median over rounds of the first request and of the steady requests, and
`first_over_steady` (1.0 = the first request costs no more than any other).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, arg_parser, emit, machine, table  # noqa: E402

from services.stack import free_port, start_service  # noqa: E402

PHOTO = (REPO / "tests" / "data" / "photos" / "person.jpg").read_bytes()
MODELS = {"fp32": {"detector": "nanodet-m", "embedder": "fmnist-lite0"}}
MODELS["int8"] = {k: f"{v}-int8" for k, v in MODELS["fp32"].items()}


def _post(url: str, data: dict[str, str] | None = None) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    resp = httpx.post(url, files={"image": ("photo.jpg", PHOTO)}, data=data, timeout=60.0, trust_env=False)
    ms = (time.perf_counter() - t0) * 1e3
    resp.raise_for_status()
    return ms, resp


def _boxes() -> str:
    """The photo's boxes as the gateway would send them, from the fp32 detector in this process."""
    from detector import Detector
    from imgcore.image import decode_image

    image = decode_image(PHOTO)
    detections = Detector(REPO / "models" / "nanodet-m").detect(image)
    whole = [0.0, 0.0, float(image.shape[1]), float(image.shape[0])]  # the gateway also embeds the whole photo
    return json.dumps([list(d.box) for d in detections] + [whole])


def one_run(service: str, model: str, warm: bool, after: int, boxes: str, tmp: Path) -> tuple[float, float]:
    """(first request ms, median of the next `after`) of a freshly started service."""
    args = ["--model-uri", (REPO / "models" / model).as_uri(), "--model-cache-dir", str(tmp / "cache")]
    args.append("--warm-up" if warm else "--no-warm-up")
    proc = start_service(service, free_port(), args=args, log_path=tmp / f"{service}.log")
    try:
        proc.wait_ready(180.0)
        route = "/v1/detect" if service == "detector" else "/v1/embed"
        data = None if service == "detector" else {"boxes": boxes}
        first, _ = _post(proc.url + route, data)
        steady = [_post(proc.url + route, data)[0] for _ in range(after)]
        return first, statistics.median(steady)
    finally:
        proc.stop()


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="starts per service and mode (default 3)")
    parser.add_argument("--after", type=int, default=10, help="steady requests after the first (default 10)")
    parser.add_argument("--models", choices=sorted(MODELS), default="fp32", help="which models (default fp32)")
    args = parser.parse_args()
    boxes = _boxes()
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-warmup-") as tmp:
        for r in range(args.rounds):
            for service, model in MODELS[args.models].items():
                for warm in (r % 2 == 0, r % 2 != 0):
                    mode = "warm_up" if warm else "no_warm_up"
                    got = one_run(service, model, warm, args.after, boxes, Path(tmp))
                    runs.setdefault(service, {}).setdefault(mode, []).append(got)
    result: dict[str, Any] = {"rounds": args.rounds, "after": args.after, "models": MODELS[args.models]}
    rows = []
    for service, modes in runs.items():
        for mode, got in modes.items():
            first = statistics.median(g[0] for g in got)
            steady = statistics.median(g[1] for g in got)
            cell = {"first_ms": round(first, 1), "steady_ms": round(steady, 1)}
            result.setdefault(service, {})[mode] = {**cell, "first_over_steady": round(first / steady, 2)}
            rows.append([service, mode, cell["first_ms"], cell["steady_ms"], round(first / steady, 2)])
    result["machine"] = machine()
    print(table(["service", "mode", "first ms", "steady ms", "first/steady"], rows))
    emit(result)


if __name__ == "__main__":
    main()
