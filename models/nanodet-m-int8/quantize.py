"""nanodet-m (fp32) -> nanodet-m-int8: static QDQ quantisation, boxes and speed vs fp32 -> card.json.

    apt-get install darknet dataset-fashion-mnist     # calibration photos
    python models/nanodet-m-int8/quantize.py [--repeats 20]

Calibration (48 images, none of them an evaluation photo): the four photos of Debian's `darknet`
package that the tests do not use (kite, eagle, giraffe, scream; sha256 checked) as they are, flipped
and as two seeded random crops each (16), plus 32 Fashion-MNIST TRAIN items rendered as shop photos
(seed 19), all through the served preprocessing. Evaluation: every photo in tests/data/photos and
services/static/samples, fp32 and int8 at the card's default threshold, paired by detector.compare
(same label, IoU >= 0.5); the table and the agreement figure go into the card (`quality`).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE.parent))

from int8_recipe import interleaved_ms, quantize, tensors_digest, write_card  # noqa: E402

from detector import Detection, Detector  # noqa: E402
from detector.compare import agreement  # noqa: E402
from imgcore.card import MODEL_NAME, load_card  # noqa: E402
from imgcore.fmnist import load_fmnist, render_shop_photo  # noqa: E402
from imgcore.image import decode_image  # noqa: E402

FP32 = HERE.parent / "nanodet-m"
DARKNET = Path("/usr/share/darknet/data")
CALIBRATION_PHOTOS = ("kite.jpg", "eagle.jpg", "giraffe.jpg", "scream.jpg")
EVAL_DIRS = (REPO / "tests" / "data" / "photos", REPO / "services" / "static" / "samples")
SEED, FMNIST_COUNT = 19, 32
INPUT = str(load_card(FP32)["input"]["name"])
# The max-pool's padding value is -inf (TF PadV2): its MinMax range has no finite scale, so the pad and the
# pool it feeds stay float.
EXCLUDE_POOL = ("PartitionedCall/PadV2", "PartitionedCall/MaxPool2d")


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
    for _ in range(2):
        ch, cw = int(h * rng.uniform(0.5, 0.9)), int(w * rng.uniform(0.5, 0.9))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(np.ascontiguousarray(image[y : y + ch, x : x + cw]))
    return out


def calibration_images() -> tuple[list[np.ndarray], dict[str, str]]:
    rng = np.random.default_rng(SEED)
    images: list[np.ndarray] = []
    digests = {}
    for name in CALIBRATION_PHOTOS:
        raw = (DARKNET / name).read_bytes()
        digests[name] = hashlib.sha256(raw).hexdigest()
        images += _crops(decode_image(raw), rng)
    fmnist, _ = load_fmnist("train")
    for i in rng.choice(len(fmnist), FMNIST_COUNT, replace=False):
        images.append(render_shop_photo(fmnist[i], np.random.default_rng([SEED, int(i)]), 320))
    return images, digests


def eval_photos() -> list[Path]:
    return sorted(p for d in EVAL_DIRS for p in d.glob("*.jpg"))


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


def speed(fp32: Detector, calib: np.ndarray, repeats: int) -> dict[str, Any]:
    paths = {"fp32": FP32 / MODEL_NAME, "int8": HERE / MODEL_NAME}
    tensors = [fp32.preprocess(decode_image(p.read_bytes()))[0] for p in eval_photos()[:1]]
    ms = interleaved_ms(paths, {INPUT: tensors[0]}, repeats)
    return {"threads": 1, "how": "python bench/int8.py", "batch1": {**ms, "speedup": round(ms["fp32"] / ms["int8"], 3)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    fp32_det = Detector(FP32)
    images, digests = calibration_images()
    calib = np.concatenate([fp32_det.preprocess(im)[0] for im in images])
    exclude = [*EXCLUDE_POOL, *head_tails(FP32 / MODEL_NAME)]
    quantize(FP32 / MODEL_NAME, HERE / MODEL_NAME, INPUT, calib, batch=1, exclude=exclude)
    fields: dict[str, Any] = {
        "name": "nanodet-m-int8",
        "version": "1.0.0",
        "produced_by": "models/nanodet-m-int8/quantize.py",
        "quantized_from": {k: load_card(FP32)[k] for k in ("name", "version", "sha256")},
        "calibration": {
            "data": "Debian darknet data/{kite,eagle,giraffe,scream}.jpg as is, flipped, 2 seeded crops each; "
            f"{FMNIST_COUNT} Fashion-MNIST TRAIN shop photos (320 px); served preprocessing",
            "photos_sha256": digests,
            "count": len(images),
            "seed": SEED,
            "tensors_sha256": tensors_digest(calib),
        },
        "quantization": {
            "nodes_excluded": exclude,
            "why_excluded": "max-pool padding is -inf (no finite scale); the heads' split/sigmoid/reshape/"
            "transpose tails would clip scores to the calibration photos' best score",
        },
    }
    write_card(FP32, HERE, fields)  # the int8 folder must hold a valid card before Detector opens it
    int8_det = Detector(HERE)
    fields["quality"] = compare(fp32_det, int8_det)
    fields["latency_ms"] = speed(fp32_det, calib, args.repeats)
    card = write_card(FP32, HERE, fields)
    print(card["sha256"], card["latency_ms"], card["quality"]["agreement"], card["quality"]["matched"])


if __name__ == "__main__":
    main()
