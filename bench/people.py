"""Every person in the photo, measured on the hand-labelled photos of tests/data/people/labels.json: person
recall, garment recall and precision (IoU >= 0.5) per photo and overall, and the cost of detection per
photo, for today's pipeline and the new one, side by side in one run.

    python bench/people.py [--repeats 5] [--detector nanodet-m-int8] [--long-side 384] [--evidence 0.07]
                           [--alone 0.4] [--gate-side 192] [--own-score 0.3]

Pipelines: `before` = what shipped before issue 29: `--before-detector`'s people (NanoDet-m fp32), single-person
MoveNet on each, garments from keypoints only; the others run `--detector` (the service's default, NanoDet-m int8):
`fused` = NanoDet's people fused with MoveNet MultiPose's, single-person MoveNet on every person, one step after
the other; `parallel` = the same work as the detector service runs it: MultiPose beside NanoDet on a 2-thread pool
(cancelled when unused), the crops of NanoDet's people started on it as soon as NanoDet has answered
(detector.crops.EarlyCrops), the people only MultiPose found cropped after it, two at a time; `own` = `parallel`,
but MultiPose's own keypoints for a person whose shoulders, hips, knees and ankles it all sees with at least
`--own-score` (no crop for that person). Every pipeline but `before` refines the garments with the photo's colours
(detector.garment_evidence: shorts end at their hem, a bare torso has no top). `--alone S`: a scene NanoDet finds
nothing in keeps MultiPose's people scored S or more (the service's `people_alone_score`, 0.4; 1 turns it off).
`--gate-side`: the service's small first pass on a scene of other things with only a faint person candidate (0:
off). A detection inside an `ignore` box counts neither way. Cost per photo and pipeline, the pipelines
interleaved: the median wall clock of the whole detection (model, pose, garments) and its median critical-path CPU
time (bench/critical.py: the latency with a free core per thread, which a busy shared machine's wall clock cannot
show); each includes the photo's one foreground analysis, which the detector service runs for every photo (flat-lay
items; on the pose pass's side thread first, for its plain-frame check). Photos without people (dog.jpg,
horses.jpg, a flat-lay, a product shot NanoDet finds nothing in) show what the person-evidence gate saves. Prints
tables, then as the LAST line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import arg_parser, emit, machine, table  # noqa: E402
from bench.critical import CpuTrace  # noqa: E402
from bench.pose import medians_ms  # noqa: E402
from detector import Detection, Detector  # noqa: E402
from detector.compare import correct, in_ignored  # noqa: E402
from detector.crops import EarlyCrops  # noqa: E402
from detector.garments import GARMENT_KINDS, find_garments  # noqa: E402
from detector.multipose import MultiPoseEstimator  # noqa: E402
from detector.people import find_people  # noqa: E402
from detector.pose import PoseEstimator  # noqa: E402
from imgcore.foreground import foreground_parts  # noqa: E402
from imgcore.image import decode_image  # noqa: E402
from services.detector.garments import once, side_pool  # noqa: E402

LABELS = REPO / "tests/data/people/labels.json"
NO_PEOPLE = [REPO / "tests/data/photos" / name for name in ("dog.jpg", "horses.jpg")] + [
    REPO / "services/static/samples" / name for name in ("flat-lay.jpg", "shop-ankle-boot.jpg")
]
MODELS = REPO / "models"
PIPELINES = ("before", "fused", "parallel", "own")
BODY = (5, 6, 11, 12, 13, 14, 15, 16)  # shoulders, hips, knees, ankles: every garment's points
Found = tuple[list[Detection], list[tuple[int, Detection]]]  # people (all detections), garments


def pipelines(args: argparse.Namespace, trace: CpuTrace) -> dict[str, Callable[[np.ndarray], Found]]:
    detector = Detector(MODELS / args.detector, intra_threads=1)
    earlier = Detector(MODELS / args.before_detector, intra_threads=1)
    single = PoseEstimator(MODELS / "movenet-lightning", intra_threads=1)
    multi = MultiPoseEstimator(MODELS / "movenet-multipose", intra_threads=1, long_side=args.long_side)
    side = side_pool(2)  # as the detector service runs it: a lower priority than the caller's thread
    for model, method, stage in (
        (detector, "run", "detect"),
        (earlier, "run", "detect"),
        (multi, "people", "multipose"),
        (single, "keypoints", "crop"),
    ):
        trace.wrap(model, method, stage)

    alone = args.alone if args.alone < 1 else None

    def run(image: np.ndarray, pose: MultiPoseEstimator | None, pool: Executor | None, own: float | None) -> Found:
        early = EarlyCrops(single, image, 6, pool) if pool is not None and own is None else None
        # The detector service analyses every photo's foreground once (the flat-lay's items; whether the frame
        # is plain, which the pose pass's side thread asks first): every pipeline pays it, as the service does.
        foreground = once(trace.traced(lambda: foreground_parts(image), "multipose"))
        people, posed = find_people(
            detector if pose is not None else earlier,
            pose,
            image,
            evidence_score=args.evidence,
            alone_score=alone,
            executor=pool,
            on_detections=early.start if early is not None else None,
            plain=lambda: foreground().plain,
            gate_side=args.gate_side or None,
        )
        foreground()
        confident = {i: p for i, p in posed.items() if own is not None and p[list(BODY), 2].min() >= own}
        if early is not None:
            confident = early.keypoints(people)
        garments = find_garments(
            image,
            people,
            single,
            max_people=6,
            min_score=0.3,
            posed=confident,
            executor=pool,
            refine=pose is not None,
            product_shot=foreground().plain,  # as the service: a product's "person" gets none (no photo here is one)
        )
        return people, garments

    return {
        "before": lambda image: run(image, None, None, None),
        "fused": lambda image: run(image, multi, None, None),
        "parallel": lambda image: run(image, multi, side, None),
        "own": lambda image: run(image, multi, side, args.own_score),
    }


def score_photo(photo: dict[str, Any], found: Found) -> dict[str, int]:
    """Counts: people labelled/found, garments labelled/predicted/matched (per kind, summed)."""
    people, garments = found
    ignore = photo["ignore"]
    labelled = [("person", p["box"]) for p in photo["people"]]
    counts = {"people": len(labelled), "people_found": len(correct(people, labelled, ignore))}
    counts.update(garments=0, predicted=0, matched=0)
    for kind in GARMENT_KINDS:
        truth = [(kind, p["garments"][kind]) for p in photo["people"] if kind in p["garments"]]
        pred = [g for _, g in garments if g.label == kind and not in_ignored(g.box, ignore)]
        counts["garments"] += len(truth)
        counts["predicted"] += len(pred)
        counts["matched"] += len(correct(pred, truth))
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


def cost(
    runs: dict[str, Callable[[np.ndarray], Found]], images: dict[str, np.ndarray], repeats: int, trace: CpuTrace
) -> dict[str, dict[str, dict[str, float]]]:
    """Per photo and pipeline: median wall ms (`wall`) and median critical-path CPU ms (`critical`)."""
    critical: dict[tuple[str, str], list[float]] = {}

    def timed(name: str, run: str, image: np.ndarray) -> None:
        critical.setdefault((name, run), []).append(trace.critical_ms(lambda: runs[run](image)))

    out: dict[str, dict[str, dict[str, float]]] = {"wall": {}, "critical": {}}
    for name, image in images.items():
        fns = {run: (lambda run=run, image=image, name=name: timed(name, run, image)) for run in runs}
        out["wall"][name] = {run: round(value, 1) for run, value in medians_ms(fns, repeats, warmup=1).items()}
        out["critical"][name] = {run: round(float(np.median(critical[name, run])), 1) for run in runs}
    return out


def _ratio(cost_ms: dict[str, dict[str, float]], run: str) -> float:
    return round(float(np.median([by_run[run] / by_run["before"] for by_run in cost_ms.values()])), 2)


def report(result: dict[str, Any]) -> None:
    headers = ["photo", *(f"{run} P/G/✓/pred" for run in PIPELINES), *(f"{run} ms" for run in PIPELINES)]
    headers += [f"{run} crit" for run in PIPELINES]
    rows = []
    for name, by_run in result["per_photo"].items():
        cells = [
            f"{c['people_found']}/{c['people']} {c['matched']}/{c['garments']}/{c['predicted']}"
            for c in by_run.values()
        ]
        times = [*result["cost_ms"]["wall"][name].values(), *result["cost_ms"]["critical"][name].values()]
        rows.append([name.split("/")[-1], *cells, *times])
    for name in result["no_people_ms"]["wall"]:
        times = [*result["no_people_ms"]["wall"][name].values(), *result["no_people_ms"]["critical"][name].values()]
        rows.append([name, *("-" for _ in PIPELINES), *times])
    print(table(headers, rows))
    ratios, nobody = result["cost_over_before"], result["no_people_over_before"]
    print(table(["pipeline", "person recall", "garment recall", "garment precision", "wall / before",
                 "critical / before", "no people: wall", "critical"],
                [[run, o["person_recall"], o["garment_recall"], o["garment_precision"], ratios["wall"][run],
                  ratios["critical"][run], nobody["wall"][run], nobody["critical"][run]]
                 for run, o in result["overall"].items()]))  # fmt: skip


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--long-side", type=int, default=384)
    ap.add_argument("--evidence", type=float, default=0.07)
    ap.add_argument("--alone", type=float, default=0.4)
    ap.add_argument("--gate-side", type=int, default=192, help="the service's people_gate_side (0: off)")
    ap.add_argument("--detector", default="nanodet-m-int8", help="a detector folder in models/")
    ap.add_argument("--before-detector", default="nanodet-m", help="the detector of `before`")
    ap.add_argument("--own-score", type=float, default=0.3)
    args = ap.parse_args()
    labels = json.loads(LABELS.read_text())
    photos = [(p, decode_image((LABELS.parent / p["file"]).read_bytes())) for p in labels["photos"]]
    trace = CpuTrace()
    runs = pipelines(args, trace)
    result: dict[str, Any] = {
        "machine": machine(),
        **{
            k: vars(args)[k]
            for k in ("detector", "before_detector", "long_side", "evidence", "alone", "gate_side", "own_score")
        },
    }
    result.update(quality(runs, photos))
    result["cost_ms"] = cost(runs, {p["file"]: image for p, image in photos}, args.repeats, trace)
    result["no_people_ms"] = cost(runs, {p.name: decode_image(p.read_bytes()) for p in NO_PEOPLE}, args.repeats, trace)
    for key, costs in (("cost_over_before", result["cost_ms"]), ("no_people_over_before", result["no_people_ms"])):
        result[key] = {metric: {run: _ratio(costs[metric], run) for run in PIPELINES} for metric in costs}
    report(result)
    emit(result)


if __name__ == "__main__":
    main()
