"""The knobs of one training run (`imgsearch train`, or a model script such as models/fmnist-lite0/train.py), with
the defaults the card's `training.recipe` records."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BASE_GENERAL = "general-lite0"
HEADS = ("projection", "linear")  # embedder.training.net.EmbedNet's; named here, where no torch is imported
CHOICES: dict[str, tuple[str, ...]] = {
    "head": HEADS,
    "class_init": ("imprint", "random"),
    "batchnorm": ("imagenet", "batch"),
}


@dataclass
class Recipe:
    catalog: str
    out: Path
    base: str = BASE_GENERAL  # general-lite0 (ImageNet backbone), or the --out folder of an earlier run
    minutes: float = 4.0  # wall-clock budget of the training loop; the learning rate anneals within it
    epochs: int = 30  # at most; the budget usually ends the run first
    dim: int = 128
    image_size: int = 0  # 0: from the catalog's image sizes (job.size_for)
    batch: int = 32
    lr_backbone: float = 3e-4
    lr_head: float = 3e-3
    # Stem + this many of the 16 MBConv blocks stay frozen: 12 suits minutes of CPU (measured on 4-minute runs);
    # hours can afford fewer (the demo model's 58-minute recipe froze 5).
    freeze_blocks: int = 12
    warmup_steps: int = 100  # linear warmup, at most a tenth of the run's steps
    # How the run starts and what it lets move, one choice each (CHOICES); the defaults suit minutes of CPU,
    # the other values are the demo model's recipe (models/fmnist-lite0/train.py, one 58-minute stage).
    head: str = "projection"  # "projection": no bias, starts as general-lite0's; "linear": bias, random start
    class_init: str = "imprint"  # CosFace class weights: mean embedding of the class's images, or "random"
    # "imagenet": every BatchNorm keeps its ImageNet statistics; "batch": those of the trainable blocks follow the
    # batches, and the frozen stem and blocks run wholly in eval mode.
    batchnorm: str = "imagenet"
    p_catalog: float = 0.4  # share of samples that are catalog views; the rest are shop photos
    p_crop: float = 0.45  # share that are shop photos cropped to their foreground (the rest: whole photos)
    val_fraction: float = 0.15  # products held out for validation
    threads: int = 0  # torch threads (0: the machine's cores); one more thread renders the samples
    seed: int = 0
    name: str = ""  # card name; default: the --out folder's name
    version: str = ""  # card version; default: a UTC stamp
    resume: bool = False
    progress: bool = True
    s3_endpoint_url: str | None = None

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")

    def to_card(self) -> dict[str, Any]:
        skip = {"out", "resume", "progress", "s3_endpoint_url", "name", "version", "catalog"}
        return {k: v for k, v in asdict(self).items() if k not in skip}
