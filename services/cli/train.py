"""`imgsearch train`: metric learning on any catalog (needs the `[train]` extra: torch). Writes a model folder
(model.onnx + card.json + checkpoint.pt) that `index build --embedder`, `up --embedder` and `models publish`
take as it is."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.cli.flags import add_s3_endpoint_url
from services.defaults import DEFAULT_CACHE_DIR, model_uri

if TYPE_CHECKING:
    from embedder.training.recipe import Recipe

INSTALL_HINT = 'pip install torch==2.13.0 && pip install -e ".[train]"'


def recipe_of(args: argparse.Namespace) -> Recipe:
    """The recipe of `imgsearch train`'s flags: a flag and the field it sets share their name."""
    from embedder.training.recipe import Recipe

    fields = {k: v for k, v in vars(args).items() if k in Recipe.__dataclass_fields__}  # s3_endpoint_url too
    return Recipe(**fields, progress=not args.no_progress)


def _run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        print(f"imgsearch train needs the training extra (never a serving dependency): {INSTALL_HINT}", file=sys.stderr)
        return 2
    from ann_index.build.rebuild import RebuildRefused
    from embedder.training.job import run_training
    from embedder.training.model_setup import base_checkpoint

    recipe = recipe_of(args)
    if base_checkpoint(recipe.base) is None:  # the general embedder's ONNX, to compare against
        from services.common.loading import model_store

        base_dir = model_store(DEFAULT_CACHE_DIR, args.s3_endpoint_url).fetch(args.base_model)
    else:
        base_dir = Path(recipe.base)
    try:
        card = run_training(recipe, base_dir, command=shlex.join(["imgsearch", *sys.argv[1:]]))
    except RebuildRefused as exc:
        print(f"imgsearch train: REFUSED, nothing written: {exc.message}", file=sys.stderr)
        return 3
    val = card["training"]["validation"]
    print(
        json.dumps(
            {
                "out": str(recipe.out),
                "seconds": card["training"]["seconds"],
                "base": val["base"],
                "trained": val["trained"],
            }
        )
    )
    return 0


HELP = {
    "base": "general-lite0 (ImageNet backbone) or the --out folder of an earlier run",
    "minutes": "training budget; the learning rate anneals within it, so the run still ends annealed",
    "epochs": "at most this many epochs",
    "dim": "embedding dimension",
    "image_size": "input size of the trained model; 0: the catalog's median image side, to a multiple of 16, "
    "within 64..224",
    "freeze_blocks": "stem + this many first MBConv blocks stay frozen",
    "warmup_steps": "linear warmup steps (at most a tenth of the run)",
    "head": "projection: no bias, starts as general-lite0's projection; linear: bias, random start",
    "class_init": "CosFace class weights: imprint (mean embedding of each class) or random",
    "batchnorm": "imagenet: every BatchNorm keeps its ImageNet statistics; batch: the trainable blocks' follow the "
    "batches",
    "p_catalog": "share of catalog views among the samples",
    "p_crop": "share of foreground-cropped shop photos (the rest are whole shop photos)",
    "val_fraction": "share of products held out for validation",
    "threads": "torch threads, 0: the machine's cores (one more thread renders the samples)",
    "name": "card name (default: the --out folder's name)",
    "version": "card version (default: a UTC stamp)",
}
FLAGLESS = {"catalog", "out", "resume", "progress", "s3_endpoint_url"}


def _add_recipe_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of the recipe, with its default: the card records the same names and values."""
    from dataclasses import fields

    from embedder.training.recipe import CHOICES, Recipe

    for f in fields(Recipe):
        if f.name not in FLAGLESS:
            shown = f" (default {f.default})" if f.default != "" else ""
            flag = "--" + f.name.replace("_", "-")
            parser.add_argument(
                flag,
                type=type(f.default),
                default=f.default,
                choices=CHOICES.get(f.name),
                help=HELP.get(f.name, "") + shown,
            )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train an embedder on a catalog (metric learning; needs the [train] extra)", description=__doc__
    )
    p.add_argument("--catalog", required=True, metavar="URI", help="catalog.jsonl: path, file:// or s3://")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="model folder to write (and resume)")
    _add_recipe_flags(p)
    p.add_argument(
        "--base-model",
        type=model_uri,
        default=model_uri("general-lite0"),
        metavar="NAME|PATH|URI",
        help="the general embedder's model folder (model store URI in a cluster), validated next to the trained "
        "model when --base is general-lite0 (default: this checkout's models/general-lite0)",
    )
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    add_s3_endpoint_url(p, "catalog or model store")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)
