"""Every person in the photo, measured on the hand-labelled photos of tests/data/people/labels.json: person
recall, garment recall and precision (IoU >= 0.5) per photo and overall, and the cost of detection per
photo, for today's pipeline and the new one, side by side in one run.

    python bench/people.py [--repeats 5] [--long-side 384] [--evidence 0.15]

Pipelines: `before` = NanoDet's people, single-person MoveNet on each (what shipped before issue 29);
`fused` = NanoDet's people fused with MoveNet MultiPose's, single-person MoveNet on every person;
`multi` = the same people, MultiPose's own keypoints for the people it found (single-person MoveNet only for
the others). A detection inside an `ignore` box counts neither way. Cost: medians of the whole detection
(model, pose, garments) per photo, the pipelines interleaved; photos without people (dog.jpg, horses.jpg)
show what the person-evidence gate saves. Prints tables, then as the LAST line one JSON object.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import arg_parser, emit, machine, table  # noqa: E402
from bench.pose import medians_ms  # noqa: E402
from detector import Detection, Detector  # noqa: E402
from detector.garments import GARMENT_KINDS, find_garments  # noqa: E402
from detector.multipose import MultiPoseEstimator  # noqa: E402
from detector.nms import box_iou  # noqa: E402
from detector.people import find_people  # noqa: E402
from detector.pose import PoseEstimator  # noqa: E402
from imgcore.image import decode_image  # noqa: E402

LABELS = REPO / "tests/data/people/labels.json"
NO_PEOPLE = [REPO / "tests/data/photos" / name for name in ("dog.jpg", "horses.jpg")]
MODELS = REPO / "models"
PIPELINES = ("before", "fused", "multi")
Found = tuple[list[Detection], list[tuple[int, Detection]]]  # people (all detections), garments


def pipelines(evidence: float, long_side: int) -> dict[str, Callable[[np.ndarray], Found]]:
    detector = Detector(MODELS / "nanodet-m", intra_threads=1)
    single = PoseEstimator(MODELS / "movenet-lightning", intra_threads=1)
    multi = MultiPoseEstimator(MODELS / "movenet-multipose", intra_threads=1, long_side=long_side)

    def run(image: np.ndarray, pose: MultiPoseEstimator | None, own_points: bool) -> Found:
        people, posed = find_people(detector, pose, image, evidence_score=evidence)
        garments = find_garments(
            image, people, single, max_people=6, min_score=0.3, posed=posed if own_points else None
        )
        return people, garments

    return {
        "before": lambda image: run(image, None, False),
        "fused": lambda image: run(image, multi, False),
        "multi": lambda image: run(image, multi, True),
    }


def _ignored(box: tuple[float, ...], ignore: list[list[float]]) -> bool:
    """Mostly (half or more of its area) inside an ignore box."""
    for x1, y1, x2, y2 in ignore:
        w, h = min(box[2], x2) - max(box[0], x1), min(box[3], y2) - max(box[1], y1)
        if w > 0 and h > 0 and w * h >= 0.5 * (box[2] - box[0]) * (box[3] - box[1]):
            return True
    return False


def _matches(truth: list[list[float]], found: list[tuple[float, ...]]) -> int:
    """Greedy one-to-one matches at IoU >= 0.5, best overlaps first."""
    if not truth or not found:
        return 0
    overlaps = np.array([box_iou(np.array(t, dtype=np.float64), np.array(found, dtype=np.float64)) for t in truth])
    pairs = sorted(((overlaps[i, j], i, j) for i in range(len(truth)) for j in range(len(found))), reverse=True)
    used_t, used_f = set(), set()
    for value, i, j in pairs:
        if value >= 0.5 and i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    return len(used_t)


def score_photo(photo: dict[str, Any], found: Found) -> dict[str, int]:
    """Counts: people labelled/found, garments labelled/predicted/matched (per kind, summed)."""
    people, garments = found
    ignore = photo["ignore"]
    boxes = [d.box for d in people if d.label == "person" and not _ignored(d.box, ignore)]
    counts = {"people": len(photo["people"]), "people_found": _matches([p["box"] for p in photo["people"]], boxes)}
    counts.update(garments=0, predicted=0, matched=0)
    for kind in GARMENT_KINDS:
        truth = [p["garments"][kind] for p in photo["people"] if kind in p["garments"]]
        pred = [g.box for _, g in garments if g.label == kind and not _ignored(g.box, ignore)]
        counts["garments"] += len(truth)
        counts["predicted"] += len(pred)
        counts["matched"] += _matches(truth, pred)
    return counts


def rates(counts: dict[str, int]) -> dict[str, float]:
    return {
        "person_recall": round(counts["people_found"] / max(counts["people"], 1), 3),
        "garment_recall": round(counts["matched"] / max(counts["garments"], 1), 3),
        "garment_precision": round(counts["matched"] / max(counts["predicted"], 1), 3),
    }


def quality(runs: dict[str, Callable[[np.ndarray], Found]], photos: list[tuple[dict[str, Any], np.ndarray]]) -> dict:
    per_photo: dict[str, dict[str, dict[str, int]]] = {}
    totals = {name: dict.fromkeys(("people", "people_found", "garments", "predicted", "matched"), 0) for name in runs}
    for photo, image in photos:
        per_photo[photo["file"]] = {}
        for name, run in runs.items():
            counts = score_photo(photo, run(image))
            per_photo[photo["file"]][name] = counts
            for key, value in counts.items():
                totals[name][key] += value
    return {"per_photo": per_photo, "overall": {name: {**totals[name], **rates(totals[name])} for name in runs}}


def cost(runs: dict[str, Callable[[np.ndarray], Found]], images: dict[str, np.ndarray], repeats: int) -> dict:
    out = {}
    for name, image in images.items():
        ms = medians_ms({run: (lambda run=run, image=image: runs[run](image)) for run in runs}, repeats, warmup=1)
        out[name] = {run: round(value, 1) for run, value in ms.items()}
    return out


def _ratio(cost_ms: dict[str, dict[str, float]], names: list[str], run: str) -> float:
    return round(float(np.median([cost_ms[n][run] / cost_ms[n]["before"] for n in names])), 2)


def report(result: dict[str, Any]) -> None:
    headers = ["photo", *(f"{run} P/G/✓/pred" for run in PIPELINES), *(f"{run} ms" for run in PIPELINES)]
    rows = []
    for name, by_run in result["per_photo"].items():
        cells = [
            f"{c['people_found']}/{c['people']} {c['matched']}/{c['garments']}/{c['predicted']}"
            for c in by_run.values()
        ]
        rows.append([name.split("/")[-1], *cells, *result["cost_ms"][name].values()])
    for name in result["no_people_ms"]:
        rows.append([name, "-", "-", "-", *result["no_people_ms"][name].values()])
    print(table(headers, rows))
    print(table(["pipeline", "person recall", "garment recall", "garment precision"],
                [[run, o["person_recall"], o["garment_recall"], o["garment_precision"]]
                 for run, o in result["overall"].items()]))  # fmt: skip


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--long-side", type=int, default=384)
    ap.add_argument("--evidence", type=float, default=0.15)
    args = ap.parse_args()
    labels = json.loads(LABELS.read_text())
    photos = [(p, decode_image((LABELS.parent / p["file"]).read_bytes())) for p in labels["photos"]]
    runs = pipelines(args.evidence, args.long_side)
    result: dict[str, Any] = {"machine": machine(), "long_side": args.long_side, "evidence": args.evidence}
    result.update(quality(runs, photos))
    result["cost_ms"] = cost(runs, {p["file"]: image for p, image in photos}, args.repeats)
    result["no_people_ms"] = cost(runs, {p.name: decode_image(p.read_bytes()) for p in NO_PEOPLE}, args.repeats)
    names = list(result["cost_ms"])
    result["cost_over_before"] = {run: _ratio(result["cost_ms"], names, run) for run in PIPELINES}
    nobody = list(result["no_people_ms"])
    result["no_people_over_before"] = {run: _ratio(result["no_people_ms"], nobody, run) for run in PIPELINES}
    report(result)
    emit(result)


if __name__ == "__main__":
    main()
