"""Cost and quality of the pose model per person crop: MoveNet Lightning (shipped) against Thunder, and what
garments add to one detector call. Everything measured side by side in one run.

    python bench/pose.py [--thunder /tmp/movenet-convert/movenet-thunder.onnx] [--repeats 30]

Thunder is not shipped: make it with `VARIANT=thunder models/movenet-lightning/convert.sh` (it lands in
/tmp/movenet-convert/); without it only Lightning is measured. Quality without hand-labelled keypoints:
how far Lightning's keypoints are from Thunder's (the larger, slower model) in person heights, over the
keypoints both see with confidence, and whether both give the same garments. Prints a table, then as
the LAST line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detector import Detection, Detector  # noqa: E402
from detector.garments import find_garments  # noqa: E402
from detector.pose import PoseEstimator  # noqa: E402
from imgcore.card import sha256_file  # noqa: E402
from imgcore.image import decode_image  # noqa: E402

MODELS = REPO / "models"
PHOTOS = [REPO / "tests/data/photos" / name for name in ("person.jpg", "people/park.jpg", "people/astronaut.jpg")]
MIN_SCORE = 0.3


def medians_ms(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds of each function, run in turn (round robin) so machine noise hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def thunder_dir(onnx: Path, into: Path) -> Path:
    """A model folder for the Thunder conversion: Lightning's card with Thunder's input size and sha256."""
    card = json.loads((MODELS / "movenet-lightning" / "card.json").read_text())
    card.update(name="movenet-thunder", sha256=sha256_file(onnx))
    card["input"] = {**card["input"], "shape": [1, 256, 256, 3], "size": [256, 256]}
    into.mkdir(parents=True, exist_ok=True)
    (into / "card.json").write_text(json.dumps(card))
    shutil.copy(onnx, into / "model.onnx")
    return into


def people(detector: Detector) -> list[tuple[str, np.ndarray, list[Detection]]]:
    out = []
    for path in PHOTOS:
        image = decode_image(path.read_bytes())
        out.append((path.name, image, detector.detect(image)))
    return out


def agreement(a: PoseEstimator, b: PoseEstimator, photos: list[tuple[str, np.ndarray, list[Detection]]]) -> float:
    """Median distance between a's and b's keypoints, in person heights, where both are confident."""
    dists = []
    for _, image, detections in photos:
        for det in (d for d in detections if d.label == "person"):
            pa, pb = a.keypoints(image, det.box), b.keypoints(image, det.box)
            both = (pa[:, 2] >= MIN_SCORE) & (pb[:, 2] >= MIN_SCORE)
            height = det.box[3] - det.box[1]
            dists.extend((np.linalg.norm(pa[both, :2] - pb[both, :2], axis=1) / height).tolist())
    return float(np.median(dists)) if dists else float("nan")


def garments(pose: PoseEstimator, photos: list[tuple[str, np.ndarray, list[Detection]]]) -> dict[str, list[str]]:
    found = {}
    for name, image, detections in photos:
        pairs = find_garments(image, detections, pose, max_people=4, min_score=MIN_SCORE)
        found[name] = [f"{i}:{g.label}" for i, g in pairs]
    return found


Photos = list[tuple[str, np.ndarray, list[Detection]]]


def timed(poses: list[PoseEstimator], photos: Photos, repeats: int) -> list[dict[str, Any]]:
    """Model-only and per-person (crop + model + mapping back) medians of each pose model, interleaved."""
    _, image, detections = photos[0]
    box = next(d for d in detections if d.label == "person").box
    fns: dict[str, Callable[[], object]] = {}
    for pose in poses:
        crop = np.zeros((1, pose.size, pose.size, 3), dtype=np.int32)
        fns[pose.name + ":model"] = lambda pose=pose, crop=crop: pose._session.run({pose.input_name: crop})
        fns[pose.name + ":person"] = lambda pose=pose: pose.keypoints(image, box)
    ms = medians_ms(fns, repeats)
    return [
        {"model": p.name, "input": p.size, "model_ms": round(ms[p.name + ":model"], 2),
         "per_person_ms": round(ms[p.name + ":person"], 2)}
        for p in poses
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--thunder", type=Path, default=Path("/tmp/movenet-convert/movenet-thunder.onnx"))
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    detector = Detector(MODELS / "nanodet-m")
    photos = people(detector)
    lightning = PoseEstimator(MODELS / "movenet-lightning")
    result: dict[str, Any] = {"threads": 1, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        poses = [lightning]
        if args.thunder.is_file():
            poses.append(PoseEstimator(thunder_dir(args.thunder, Path(tmp) / "thunder")))
        rows = timed(poses, photos, args.repeats)
        result["lightning"] = rows[0]
        if len(poses) == 2:
            result["thunder"] = rows[1]
            result["thunder_over_lightning"] = round(rows[1]["per_person_ms"] / rows[0]["per_person_ms"], 2)
            result["median_keypoint_gap_person_heights"] = round(agreement(lightning, poses[1], photos), 4)
            result["garments"] = {"lightning": garments(lightning, photos), "thunder": garments(poses[1], photos)}
    image, detections = photos[1][1], photos[1][2]
    ms = medians_ms(
        {
            "detect": lambda: detector.detect(image),
            "garments": lambda: find_garments(image, detections, lightning, max_people=4, min_score=MIN_SCORE),
        },
        args.repeats,
    )
    result["park_photo"] = {
        "people": min(4, sum(d.label == "person" for d in detections)),
        "detect_ms": round(ms["detect"], 1),
        "garments_ms": round(ms["garments"], 1),
        "garments_over_detect": round(ms["garments"] / ms["detect"], 2),
    }
    print(f"{'model':<20}{'input':>6}{'model ms':>10}{'per person ms':>15}")
    for row in rows:
        print(f"{row['model']:<20}{row['input']:>6}{row['model_ms']:>10}{row['per_person_ms']:>15}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
