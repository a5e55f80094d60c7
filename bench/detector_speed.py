"""The default detector against NanoDet-m fp32: model-only speed (one thread, batch 1, interleaved) and answers
on the labelled photos, per photo, in one run.

    python bench/detector_speed.py [--repeats 15] [--candidates int8,int8-square,fp32-basic]

Speed: each candidate's onnxruntime session runs the preprocessed tensors of every labelled photo in turn,
the candidates taking turns repeat by repeat; medians of the per-photo mean. Candidates: `int8` (the default,
models/nanodet-m-int8, each photo at its own input size: detector.transforms.model_size), `int8-square` (the
same file at fp32's 416 x 416 for every photo: what the per-photo size saves), `fp32-basic` / `fp32-extended`
(the fp32 file with a lower graph optimisation level: the lever 'graph options'), and `int8-openvino` when
onnxruntime has the OpenVINO execution provider (`onnxruntime-openvino` replaces `onnxruntime`; measured in its
own venv). Quality: person recall on tests/data/people/labels.json and object recall on tests/data/objects.json
at IoU >= 0.5, each model at its card's default threshold, and how many of the objects fp32 finds correctly the
candidate finds too (detector.compare: same label, IoU >= 0.5). Target (issue 31): >= 1.8x, recall not lower,
agreement >= 0.95.
Last line: one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, arg_parser, emit, machine, table  # noqa: E402

from detector import Detector  # noqa: E402
from detector.compare import agreement, correct  # noqa: E402
from imgcore.image import decode_image  # noqa: E402
from imgcore.runtime import onnxruntime  # noqa: E402

DATA = REPO / "tests" / "data"
FP32, INT8 = REPO / "models" / "nanodet-m", REPO / "models" / "nanodet-m-int8"
Truth = list[tuple[str, list[float]]]  # (label, box)


def labelled() -> dict[str, tuple[Truth, list[list[float]]]]:
    """Photo path (under tests/data) -> (labelled objects, ignore boxes)."""
    people = json.loads((DATA / "people" / "labels.json").read_text())
    out: dict[str, tuple[Truth, list[list[float]]]] = {}
    for photo in people["photos"]:
        key = str((DATA / "people" / photo["file"]).resolve().relative_to(DATA))
        out[key] = ([("person", p["box"]) for p in photo["people"]], photo["ignore"])
    for key, objects in json.loads((DATA / "objects.json").read_text())["photos"].items():
        truth, ignore = out.get(key, ([], []))
        out[key] = (truth + [(label, box) for label, box in objects], ignore)
    return out


def quality(models: dict[str, Detector], images: dict[str, np.ndarray]) -> dict[str, Any]:
    truth = labelled()
    rows: dict[str, Any] = {}
    for key, image in images.items():
        objects, ignore = truth[key]
        found = {name: m.detect(image) for name, m in models.items()}
        right = {name: correct(dets, objects, ignore) for name, dets in found.items()}
        row: dict[str, Any] = {"labelled": len(objects)}
        for name, dets in found.items():
            row[name] = {"found": len(right[name]), "detections": len(dets)}
            if name != "fp32":
                row[name]["agree"] = agreement(right["fp32"], dets).matched
        rows[key] = row
    return {"photos": rows, "overall": _overall(rows, list(models))}


def _overall(rows: dict[str, Any], names: list[str]) -> dict[str, Any]:
    labelled = sum(r["labelled"] for r in rows.values())
    out: dict[str, Any] = {}
    for name in names:
        found = sum(r[name]["found"] for r in rows.values())
        out[name] = {"recall": round(found / labelled, 3), "found": found, "labelled": labelled}
        out[name]["detections"] = sum(r[name]["detections"] for r in rows.values())
        if name != "fp32":
            agree = sum(r[name]["agree"] for r in rows.values())
            right = sum(r["fp32"]["found"] for r in rows.values())
            out[name]["agreement_where_fp32_right"] = round(agree / right, 3)
            out[name]["agreed"] = agree
    return out


def sessions(candidates: list[str]) -> dict[str, Any]:
    ort = onnxruntime()
    levels = {"": "ORT_ENABLE_ALL", "-basic": "ORT_ENABLE_BASIC", "-extended": "ORT_ENABLE_EXTENDED"}
    out = {}
    for name in ["fp32", *candidates]:
        base, _, variant = name.partition("-")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        level = levels.get(f"-{variant}" if variant in ("basic", "extended") else "", "ORT_ENABLE_ALL")
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        providers: list[Any] = ["CPUExecutionProvider"]
        if variant == "openvino":
            if "OpenVINOExecutionProvider" not in ort.get_available_providers():
                continue
            providers = [("OpenVINOExecutionProvider", {"device_type": "CPU", "num_of_threads": "1"})]
        path = (FP32 if base == "fp32" else INT8) / "model.onnx"
        out[name] = ort.InferenceSession(str(path), opts, providers=providers)
    return out


def speed(candidates: list[str], tensors: dict[str, list[np.ndarray]], repeats: int) -> dict[str, float]:
    """Median ms per photo of each session on its own inputs: `tensors["fp32"]` (416 x 416, every photo) for the
    fp32 sessions and `int8-square`, `tensors["int8"]` (each photo at its own size) for the other int8 ones."""
    runs = sessions(candidates)
    feed = runs["fp32"].get_inputs()[0].name
    inputs = {key: tensors["fp32" if key.startswith("fp32") or key == "int8-square" else "int8"] for key in runs}
    for key, sess in runs.items():
        for t in inputs[key]:  # first runs allocate and pick kernels, per input shape
            sess.run(None, {feed: t})
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for key, sess in runs.items():
            t0 = time.perf_counter()
            for t in inputs[key]:
                sess.run(None, {feed: t})
            times[key].append((time.perf_counter() - t0) * 1e3 / len(inputs[key]))
    return {k: round(statistics.median(v), 2) for k, v in times.items()}


def report(result: dict[str, Any]) -> None:
    rows = []
    for key, row in result["quality"]["photos"].items():
        cells = [f"{row['fp32']['found']}/{row['labelled']} ({row['fp32']['detections']})"]
        cells.append(f"{row['int8']['found']}/{row['labelled']} ({row['int8']['detections']})")
        rows.append([key, *cells, f"{row['int8']['agree']}/{row['fp32']['found']}"])
    print(table(["photo", "fp32 found (detections)", "int8 found (detections)", "int8 agrees"], rows))
    overall = result["quality"]["overall"]
    print(table(["model", "recall", "detections", "agreement where fp32 right"],
                [[n, o["recall"], o["detections"], o.get("agreement_where_fp32_right", "-")]
                 for n, o in overall.items()]))  # fmt: skip
    ms = result["ms"]
    rows = [[k, v, ms["fp32"] / v] for k, v in ms.items()]
    print(table(["model", "ms (1 thread, batch 1)", "speedup vs fp32"], rows))


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--candidates", default="int8,int8-square,fp32-basic,int8-openvino")
    args = ap.parse_args()
    images = {key: decode_image((DATA / key).read_bytes()) for key in labelled()}
    models = {"fp32": Detector(FP32), "int8": Detector(INT8)}
    result: dict[str, Any] = {"bench": "detector_speed", "quality": quality(models, images)}
    tensors = {name: [m.preprocess(image)[0] for image in images.values()] for name, m in models.items()}
    result["ms"] = speed([c for c in args.candidates.split(",") if c], tensors, args.repeats)
    result["speedup"] = {k: round(result["ms"]["fp32"] / v, 3) for k, v in result["ms"].items() if k != "fp32"}
    int8 = result["quality"]["overall"]["int8"]
    result["targets_met"] = (
        result["speedup"]["int8"] >= 1.8
        and int8["found"] >= result["quality"]["overall"]["fp32"]["found"]
        and int8["agreement_where_fp32_right"] >= 0.95
    )
    result["machine"] = machine()
    report(result)
    emit(result)


if __name__ == "__main__":
    main()
