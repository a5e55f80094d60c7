"""Export the trained embedder to ONNX, check it against PyTorch, measure it, write card.json.

    python models/fmnist-lite0/export.py --ckpt /tmp/fmnist-lite0/final.pt

Steps: checkpoint -> ONNX (opset 17, dynamic batch, scaling and L2-normalisation inside the graph)
-> max |ORT - torch| on real rendered images -> latency (1 thread) -> retrieval quality through the
serving code (models/evaluate.py) -> card.json with the sha256 of the exact file written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from history import TRAIN_IMAGES, stages  # noqa: E402
from net import DIM, IMAGE_SIZE, EmbedNet  # noqa: E402

from embedder.training.export import base_card, export_onnx, latency_ms  # noqa: E402
from embedder.transforms import foreground_box, prepare  # noqa: E402
from imgcore.card import sha256_file  # noqa: E402
from imgcore.fmnist import load_fmnist, render_catalog, render_shop_photo  # noqa: E402

CROP_MARGIN = 0.05
RESIZE = "area"


def sample_images(n: int, seed: int = 1) -> np.ndarray:
    """Real inputs, half catalog images and half foreground-cropped shop photos, [n,3,S,S] float32."""
    x, _ = load_fmnist("test")
    rng = np.random.default_rng(seed)
    out = []
    for k, i in enumerate(rng.choice(len(x), n, replace=False)):
        if k % 2 == 0:
            out.append(prepare(render_catalog(x[i], IMAGE_SIZE), None, IMAGE_SIZE, 0.0, RESIZE))
        else:
            photo = render_shop_photo(x[i], rng, 224)
            out.append(prepare(photo, foreground_box(photo), IMAGE_SIZE, CROP_MARGIN, RESIZE))
    return np.stack(out)


def build_card(
    sha: str, ck: dict[str, Any], diff: float, lat: dict[str, float], quality: dict[str, Any] | None, version: str
) -> dict[str, Any]:
    args = ck["args"]
    prior = ck.get("prior", {"images": 0, "seconds": 0.0})
    arch = "EfficientNet-Lite0 (image_size=112) -> global average pool 1280 -> linear 128 -> L2"
    return base_card("fmnist-lite0", version, sha, IMAGE_SIZE, DIM, arch) | {
        "training": {
            "script": "models/fmnist-lite0/train.py",
            "data": "Fashion-MNIST train split (60k), rendered dark-on-white at 112 px (catalog) and as "
            "shop photos (item 35-90 % of frame on tinted noisy background, foreground-cropped or "
            "whole, JPEG, flips)",
            "loss": "CosFace (s=30, m=0.35) on the 10 categories",
            "optimizer": f"AdamW (weight decay 1e-4), warmup + cosine per stage, batch {args['batch']}, "
            f"stem + first {args['freeze_blocks']} blocks frozen",
            "epochs": round((prior["images"] + ck["step"] * args["batch"]) / TRAIN_IMAGES, 2),
            "batch": args["batch"],
            "image_size": IMAGE_SIZE,
            "seconds": round(prior["seconds"] + float(ck["seconds"]), 1),
            "stages": stages(ck),
            "seed": args["seed"],
            "hardware": "2 CPU cores (shared), torch CPU, channels_last",
        },
        "quality": quality,
        "onnx_vs_torch_max_abs_diff": diff,
        "latency_ms": lat,
        "produced_by": "models/fmnist-lite0/export.py",
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=Path("/tmp/fmnist-lite0/final.pt"))
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--gallery-limit", type=int, default=0)
    ap.add_argument("--queries", type=int, default=0)
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads for the evaluation")
    args = ap.parse_args()
    torch.set_num_threads(2)

    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    model = EmbedNet(IMAGE_SIZE, DIM, pretrained=False)
    model.load_state_dict(ck["model"])
    model.eval()
    onnx_path = args.out / "model.onnx"
    export_onnx(model, onnx_path)

    images = sample_images(64)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {"image": images[i : i + 16]})[0] for i in range(0, 64, 16)])
    with torch.no_grad():
        want = model(torch.from_numpy(images)).numpy()
    diff = float(np.abs(got - want).max())
    print(f"ORT vs torch max abs diff on 64 real images: {diff:.2e}", flush=True)
    if diff > 1e-4:
        raise SystemExit("ONNX export does not match PyTorch")
    lat = latency_ms(onnx_path, images)
    print(f"latency: {lat}", flush=True)

    sha = sha256_file(onnx_path)
    card_path = args.out / "card.json"
    card = build_card(sha, ck, diff, lat, None, args.version)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    if not args.skip_eval:
        from evaluate import evaluate  # the serving-side evaluation reads the card just written

        report = evaluate(args.out, args.gallery_limit, args.queries, seed=0, threads=args.threads, cache=None)
        styles = report["styles"]
        assert isinstance(styles, dict)
        quality: dict[str, Any] = {
            "gallery": report["gallery"],
            "queries": report["queries"],
            "gallery_style": "train split, catalog-style",
            "query_split": "test",
        }
        quality |= {style: v["overall"] for style, v in styles.items()}
        card = build_card(sha, ck, diff, lat, quality, args.version)
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(json.dumps(quality))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
