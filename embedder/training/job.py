"""One `imgsearch train` run: catalog -> held-out split -> base model's validation -> training -> ONNX ->
the trained model's validation on the same split -> DIR/model.onnx + DIR/card.json (+ checkpoint.pt)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ann_index.catalog.load import ReadOptions
from embedder import Embedder
from embedder.training.catalog_data import TrainSet, load_train_set, product_classes, size_for
from embedder.training.export import base_card, export_onnx, onnx_vs_torch
from embedder.training.loop import Progress, resume, train
from embedder.training.model_setup import CHECKPOINT, build
from embedder.training.net import FEATURES
from embedder.training.recipe import Recipe
from embedder.training.validate import validate
from embedder.training.views import Views
from embedder.transforms import resize_square
from imgcore.card import sha256_file
from imgcore.stamps import utc_stamp

log = logging.getLogger("imgsearch.train")


def run_training(recipe: Recipe, base_model_dir: Path, command: str = "") -> dict[str, Any]:
    """Train, export and card one model into `recipe.out`; return its card."""
    t0 = time.monotonic()
    recipe.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    recipe.threads = recipe.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(recipe.threads)
    base = Embedder(base_model_dir, intra_threads=2)
    opts = ReadOptions(progress=recipe.progress, s3_endpoint_url=recipe.s3_endpoint_url)
    # Stored at the larger of the two sizes, so neither model is judged on upscaled pixels.
    data = load_train_set(recipe.catalog, max(recipe.image_size, base.input_size), recipe.val_fraction, opts)
    recipe.image_size = recipe.image_size or size_for(data.sides)
    log.info("catalog: %d images, %d categories, %d held out", len(data.images), len(data.categories), data.val.sum())
    base_quality = validate(base, data, recipe.seed)
    log.info("base %s on the held-out split: %s", base.name, base_quality)
    products, n_products = product_classes(data)
    parts = build(recipe, len(data.categories), n_products)
    state = resume(parts, recipe.out) if recipe.resume and (recipe.out / CHECKPOINT).is_file() else Progress()
    train_rows = np.flatnonzero(~data.val)
    images = np.stack([resize_square(im, recipe.image_size) for im in data.images[train_rows]])
    state = train(
        parts,
        Views(images, data.category[train_rows], products[train_rows], recipe.p_catalog, recipe.p_crop, recipe.seed),
        recipe,
        state,
    )
    onnx = recipe.out / "model.onnx"
    export_onnx(parts.model, onnx)
    sample = np.stack([resize_square(im, recipe.image_size) for im in data.images[:16]]).transpose(0, 3, 1, 2)
    diff = onnx_vs_torch(parts.model, onnx, np.ascontiguousarray(sample, dtype=np.float32))
    card = _card(recipe, data, state, {"base": base_quality}, diff, command)
    _write(recipe.out, card)  # the Embedder reads the card
    card["training"]["validation"]["trained"] = validate(Embedder(recipe.out, intra_threads=2), data, recipe.seed)
    card["training"]["total_seconds"] = round(time.monotonic() - t0, 1)
    _write(recipe.out, card)
    return card


def _write(out: Path, card: dict[str, Any]) -> None:
    tmp = out / "card.json.tmp"
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(out / "card.json")


def _card(
    recipe: Recipe, data: TrainSet, state: Progress, quality: dict[str, Any], diff: float, command: str
) -> dict[str, Any]:
    arch = f"EfficientNet-Lite0 (image_size={recipe.image_size}) -> global average pool {FEATURES}"
    name = recipe.name or recipe.out.resolve().name
    card = base_card(
        name,
        recipe.version or utc_stamp(),
        sha256_file(recipe.out / "model.onnx"),
        recipe.image_size,
        recipe.dim,
        f"{arch} -> linear {recipe.dim} -> L2",
    )
    n_train = int((~data.val).sum())
    card["training"] = {
        "command": command,
        "catalog": {
            "uri": data.catalog_uri,
            "sha256": data.catalog_sha256,
            "images": len(data.images),
            "skipped": data.skipped,
            "categories": len(data.categories),
        },
        "recipe": recipe.to_card()
        | {
            "loss": "CosFace (s=30, m=0.35) on categories + on "
            + ("products" if data.has_products else "items (each training item its own class)"),
            "optimizer": "AdamW (weight decay 1e-4), two groups (backbone, head), warmup + cosine over "
            "max(step, wall-clock) progress",
            "augmentation": "catalog views (zoom, shift, rotation); shop photos (matte from the border colour, "
            "35-90 % of a tinted lit noisy background, colour jitter, blur, JPEG 35-95, foreground crop or "
            "whole); flips",
        },
        "steps": state.step,
        "images": state.images,
        "epochs": round(state.images / max(1, n_train), 2),
        "seconds": round(state.seconds, 1),
        "resumed": state.resumed,
        "torch": torch.__version__,
        "validation": {
            "split": f"{int(data.val.sum())} held-out items by product (sha256 of the product id)",
            "queries": "shop-style photo per held-out item, foreground-cropped (augment.query_photo)",
            "gallery": "every catalog image, cropped to its foreground as the rebuild embeds it",
        }
        | quality,
    }
    card["onnx_vs_torch_max_abs_diff"] = diff
    card["produced_by"] = "imgsearch train (embedder/training)"
    return card
