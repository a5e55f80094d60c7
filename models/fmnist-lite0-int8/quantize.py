"""fmnist-lite0 (fp32) -> fmnist-lite0-int8: static QDQ quantisation, then speed and quality vs fp32 -> card.json.

    python models/fmnist-lite0-int8/quantize.py [--evaluate] [--repeats 40]

Calibration: 256 Fashion-MNIST TRAIN items (the TEST split stays for evaluation) drawn with seed 19,
rendered through the served preprocessing in the three styles the model meets: catalog image (1/2),
shop photo cropped to its foreground (1/4), whole shop photo (1/4). The same seed gives the same
tensors; their sha256 is in the card (`calibration.tensors_sha256`). `--evaluate` runs
models/evaluate.py on the int8 model with the gallery, queries and seed of the fp32 card's `quality`
(the full sets, seed 0) and records both and their difference in the card.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent))

from evaluate import evaluate  # noqa: E402  (models/evaluate.py)
from int8_recipe import interleaved_ms, quantize, tensors_digest, write_card  # noqa: E402

from embedder import Embedder, foreground_box  # noqa: E402
from imgcore.card import MODEL_NAME, load_card  # noqa: E402
from imgcore.fmnist import load_fmnist, render_catalog, render_shop_photo  # noqa: E402

FP32 = HERE.parent / "fmnist-lite0"
SEED, COUNT, BATCH = 19, 256, 16


def calibration_tensors(emb: Embedder) -> np.ndarray:
    images, _ = load_fmnist("train")
    picked = np.random.default_rng(SEED).choice(len(images), COUNT, replace=False)
    out = []
    for j, i in enumerate(picked):
        if j % 2 == 0:
            out.append(emb.preprocess(render_catalog(images[i], emb.input_size)))
            continue
        photo = render_shop_photo(images[i], np.random.default_rng([SEED, int(i)]), 224)
        out.append(emb.preprocess(photo, foreground_box(photo) if j % 4 == 1 else None))
    return np.stack(out)


def speed(emb: Embedder, calib: np.ndarray, repeats: int) -> dict[str, Any]:
    paths = {"fp32": FP32 / MODEL_NAME, "int8": HERE / MODEL_NAME}
    out: dict[str, Any] = {"threads": 1, "how": "python bench/int8.py (interleaved, 1 onnxruntime thread)"}
    for batch in (1, 16):
        ms = interleaved_ms(paths, {"image": calib[:batch]}, repeats)
        out[f"batch{batch}"] = {**ms, "speedup": round(ms["fp32"] / ms["int8"], 3)}
    return out


def quality(threads: int) -> dict[str, Any]:
    """int8 on the 60k gallery / 10k queries / seed 0 that the fp32 card's `quality` was measured on."""
    fp32 = load_card(FP32)["quality"]
    styles = evaluate(HERE, 0, 0, 0, threads, None)["styles"]
    table: dict[str, Any] = {"gallery": 60000, "queries": 10000, "seed": 0, "how": "models/evaluate.py"}
    for style, res in styles.items():
        q = res["overall"]
        table[style] = {"fp32": fp32[style], "int8": q, "delta": {k: round(q[k] - fp32[style][k], 4) for k in q}}
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evaluate", action="store_true", help="measure retrieval quality of both (minutes)")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime threads for --evaluate")
    args = ap.parse_args()
    emb = Embedder(FP32)
    calib = calibration_tensors(emb)
    quantize(FP32 / MODEL_NAME, HERE / MODEL_NAME, "image", calib, batch=BATCH)
    fp32 = load_card(FP32)
    fields: dict[str, Any] = {
        "name": "fmnist-lite0-int8",
        "version": fp32["version"],  # the twin of that fp32 version
        "produced_by": "models/fmnist-lite0-int8/quantize.py",
        "quantized_from": {k: fp32[k] for k in ("name", "version", "sha256")},
        "calibration": {
            "data": "Fashion-MNIST TRAIN split, served preprocessing: 1/2 catalog, 1/4 shop photo "
            "foreground-cropped, 1/4 whole shop photo (imgcore.fmnist renderers)",
            "count": COUNT,
            "seed": SEED,
            "batch": BATCH,
            "tensors_sha256": tensors_digest(calib),
        },
        "latency_ms": speed(emb, calib, args.repeats),
    }
    card = write_card(FP32, HERE, fields)
    if args.evaluate:  # the evaluation loads the folder, so its card must already name the new file
        fields["quality"] = quality(args.threads)
        card = write_card(FP32, HERE, fields)
    print(card["sha256"], card["latency_ms"], card.get("quality", {}).get("catalog"))


if __name__ == "__main__":
    main()
