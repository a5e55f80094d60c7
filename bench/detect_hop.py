"""The detector hop alone: what one detection costs over HTTP against the same call in-process.

    python bench/detect_hop.py [--rounds 3] [--fmnist 60]

Starts the detector service alone, with the flags `imgsearch up` gives it, and sends each photo's decoded
pixels to it exactly as the gateway does (raw RGB body, `/v1/detect`), one request at a time from one
client, interleaved photo by photo with `Detector.detect` + the pose step in this process (one onnxruntime
thread, as the service runs each request). Nothing else runs meanwhile (no embedder, index or gateway),
so the difference is the hop itself: HTTP on loopback, the service framework, and the model run inside a
service process. The service's own `timings_ms.detect` splits it into "inside the service" and "HTTP and
framework". Last line, one JSON object: `{"hop_ms": p50 HTTP - p50 in-process, ...}` by kind of photo.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, arg_parser, emit, is_real, machine, median, query_photos, table  # noqa: E402


@contextmanager
def detector_service() -> Iterator[str]:
    """The detector of `imgsearch up` on a free port, models fetched into a temporary cache; its URL."""
    from services.stack import SERVICE_ORDER, free_port, service_args, start_service

    root = Path(tempfile.mkdtemp(prefix="detect-hop-", dir=CACHE))
    args = service_args(root, dict.fromkeys(SERVICE_ORDER, 0))["detector"]
    svc = start_service("detector", free_port(), args=args, log_path=root / "detector.log")
    try:
        svc.wait_ready(180)
        yield svc.url
    finally:
        svc.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--rounds", type=int, default=3, help="passes over the photos (default 3)")
    ap.add_argument("--fmnist", type=int, default=60, help="Fashion-MNIST shop photos (default 60)")
    args = ap.parse_args()
    from detector import Detector
    from detector.multipose import MultiPoseEstimator
    from detector.pose import PoseEstimator
    from imgcore.image import decode_image
    from services import defaults
    from services.common.settings import DetectorSettings
    from services.common.wire import HEIGHT_HEADER, RGB_CONTENT_TYPE, WIDTH_HEADER
    from services.detector.garments import find_items

    info = machine()
    photos = [(name, decode_image(raw)) for name, raw in query_photos(args.fmnist)]
    settings = DetectorSettings()
    detector = Detector(
        defaults.MODELS_DIR / "nanodet-m",
        intra_threads=1,
        inter_threads=1,
        score_threshold=settings.score_threshold,
        iou_threshold=settings.iou_threshold,
        max_detections=settings.max_detections,
    )
    pose = PoseEstimator(defaults.MODELS_DIR / "movenet-lightning", intra_threads=1, inter_threads=1)
    people = MultiPoseEstimator(defaults.MODELS_DIR / "movenet-multipose", intra_threads=1, inter_threads=1)
    times: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with detector_service() as base, httpx.Client(trust_env=False, timeout=60) as client:
        url = base + "/v1/detect"

        def remote(image: np.ndarray) -> float:
            headers = {"content-type": RGB_CONTENT_TYPE, HEIGHT_HEADER: str(image.shape[0])}
            headers[WIDTH_HEADER] = str(image.shape[1])
            resp = client.post(url, content=image.tobytes(), headers=headers)
            resp.raise_for_status()
            return float(resp.json()["timings_ms"]["detect"])

        for _, image in photos:  # warm both sides
            find_items(detector, pose, people, image, settings)
            remote(image)
        for _ in range(args.rounds):
            for name, image in photos:
                kind = "real" if is_real(name) else "fmnist"
                t0 = time.perf_counter()
                find_items(detector, pose, people, image, settings)
                times[kind]["in-process"].append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                inside = remote(image)
                times[kind]["http"].append((time.perf_counter() - t0) * 1e3)
                times[kind]["inside service"].append(inside)
    report(times, info)
    return 0


def report(times: dict[str, dict[str, list[float]]], info: dict) -> None:
    rows, out = [], {}
    for kind, got in times.items():
        local, http, inside = (median(got[k]) for k in ("in-process", "http", "inside service"))
        rows.append([kind, len(got["http"]), local, inside, http, http - local, http - inside])
        out[kind] = {"in_process_ms": round(local, 2), "inside_service_ms": round(inside, 2), "http_ms": round(http, 2)}
    print(table(["photos", "n", "in-process p50", "inside service p50", "HTTP p50", "hop", "HTTP + framework"], rows))
    emit(
        {
            "bench": "detect_hop",
            "hop_ms": {k: round(v["http_ms"] - v["in_process_ms"], 2) for k, v in out.items()},
            "by_kind": out,
            "machine": info,
        }
    )


if __name__ == "__main__":
    raise SystemExit(main())
