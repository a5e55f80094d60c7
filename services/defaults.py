"""Defaults for running from a checkout: the repository's own model store and a local data folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"
DEFAULT_DETECTOR_URI = (MODELS_DIR / "nanodet-m").as_uri()
# Issue 19: the int8 embedder is the default: within 1 point of fp32 on every Fashion-MNIST query style and
# >= 1.8x faster at batch 16 (models/fmnist-lite0-int8/README.md). The int8 detector missed its quality line.
DEFAULT_EMBEDDER_DIR = MODELS_DIR / "fmnist-lite0-int8"
DEFAULT_EMBEDDER_URI = DEFAULT_EMBEDDER_DIR.as_uri()
DEFAULT_POSE_URI = (MODELS_DIR / "movenet-lightning").as_uri()
DEFAULT_PEOPLE_URI = (MODELS_DIR / "movenet-multipose").as_uri()
DEFAULT_VAR_DIR = Path(os.environ.get("IMGSEARCH_VAR_DIR", str(Path.cwd() / "var")))
DEFAULT_CACHE_DIR = DEFAULT_VAR_DIR / "cache" / "models"


def model_uri(value: str) -> str:
    """What `--embedder` accepts: a model folder URI as is, the name of a model in the repository's store
    (`general-lite0`, `fmnist-lite0`), or a local folder path (the `--out` of `imgsearch train`)."""
    if "://" in value:
        return value
    if "/" not in value and (MODELS_DIR / value / "card.json").is_file():
        return (MODELS_DIR / value).as_uri()
    return Path(value).expanduser().resolve().as_uri()
