"""Export a train.py run to ONNX, check it against PyTorch, measure it, write card.json.

    python models/fmnist-lite0/export.py --run /tmp/fmnist-lite0

Steps: RUN/checkpoint.pt (+ RUN/stages.json) -> ONNX (embedder.training.export: opset 17, dynamic batch, scaling
and L2-normalisation inside the graph) -> max |ORT - torch| on real rendered images -> latency (1 thread) ->
retrieval quality through the serving code (models/evaluate.py) -> card.json with the sha256 of the file written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from history import read_history  # noqa: E402

from embedder.training.export import CROP_MARGIN, RESIZE, base_card, export_onnx, latency_ms, onnx_vs_torch  # noqa: E402
from embedder.training.model_setup import CHECKPOINT  # noqa: E402
from embedder.training.net import FEATURES, EmbedNet  # noqa: E402
from embedder.transforms import foreground_box, prepare  # noqa: E402
from imgcore.card import sha256_file  # noqa: E402
from imgcore.fmnist import load_fmnist, render_catalog, render_shop_photo  # noqa: E402


def sample_images(n: int, size: int, seed: int = 1) -> np.ndarray:
    """Real inputs, half catalog images and half foreground-cropped shop photos, [n,3,S,S] float32."""
    x, _ = load_fmnist("test")
    rng = np.random.default_rng(seed)
    out = []
    for k, i in enumerate(rng.choice(len(x), n, replace=False)):
        if k % 2 == 0:
            out.append(prepare(render_catalog(x[i], size), None, size, 0.0, RESIZE))
        else:
            photo = render_shop_photo(x[i], rng, 224)
            out.append(prepare(photo, foreground_box(photo), size, CROP_MARGIN, RESIZE))
    return np.stack(out)


def build_card(
    sha: str, history: dict[str, Any], diff: float, lat: dict[str, float], quality: dict[str, Any] | None, version: str
) -> dict[str, Any]:
    recipe, stages = history["recipe"], history["stages"]
    size, dim = recipe["image_size"], recipe["dim"]
    # train.py imprints the class weights only when every item is its own class (--identity, 1.3.0 on)
    identity = recipe["class_init"] == "imprint"
    loss = "CosFace (s=30, m=0.35) on " + ("every item (identity) and " if identity else "") + "the 10 categories"
    arch = f"EfficientNet-Lite0 (image_size={size}) -> global average pool {FEATURES} -> linear {dim} -> L2"
    return base_card("fmnist-lite0", version, sha, size, dim, arch) | {
        "training": {
            "script": "models/fmnist-lite0/train.py",
            "loop": "embedder/training (the loop of imgsearch train)",
            "data": f"Fashion-MNIST train split ({recipe['images']}), rendered dark-on-white at {size} px (catalog) "
            "and as shop photos (item 35-90 % of frame on tinted noisy background, foreground-cropped or "
            f"whole, JPEG{'' if identity else ', flips'})",
            "loss": loss,
            "optimizer": f"AdamW (weight decay 1e-4), warmup + cosine per stage, batch {recipe['batch']}, "
            f"stem + first {recipe['freeze_blocks']} blocks frozen",
            "recipe": recipe,
            "epochs": round(sum(s["epochs"] for s in stages), 2),
            "batch": recipe["batch"],
            "image_size": size,
            "seconds": round(sum(s["seconds"] for s in stages), 1),
            "stages": stages,
            "seed": recipe["seed"],
            "hardware": "2 CPU cores (shared), torch CPU, channels_last",
        },
        "quality": quality,
        "onnx_vs_torch_max_abs_diff": diff,
        "latency_ms": lat,
        "produced_by": "models/fmnist-lite0/export.py",
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("/tmp/fmnist-lite0"), help="the --out folder of train.py")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--gallery-limit", type=int, default=0)
    ap.add_argument("--queries", type=int, default=0)
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads for the evaluation")
    args = ap.parse_args()
    torch.set_num_threads(2)

    history = read_history(args.run)
    recipe = history["recipe"]
    ck = torch.load(args.run / CHECKPOINT, map_location="cpu", weights_only=False)
    model = EmbedNet(recipe["image_size"], recipe["dim"], pretrained=False, head=recipe["head"])
    model.load_state_dict(ck["model"])
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "model.onnx"
    export_onnx(model, onnx_path)

    images = sample_images(64, recipe["image_size"])
    diff = onnx_vs_torch(model, onnx_path, images)
    print(f"ORT vs torch max abs diff on 64 real images: {diff:.2e}", flush=True)
    if diff > 1e-4:
        raise SystemExit("ONNX export does not match PyTorch")
    lat = latency_ms(onnx_path, images)
    print(f"latency: {lat}", flush=True)

    sha = sha256_file(onnx_path)
    card_path = args.out / "card.json"
    card = build_card(sha, history, diff, lat, None, args.version)
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
        card = build_card(sha, history, diff, lat, quality, args.version)
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(json.dumps(quality))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
