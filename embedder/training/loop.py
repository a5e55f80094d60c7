"""The training loop: shopper-photo views of the catalog, CosFace on categories (and products), a wall-clock
budget the learning rate anneals within, a checkpoint every epoch and every two minutes that `--resume` takes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from embedder.training.model_setup import CHECKPOINT, Parts
from embedder.training.recipe import Recipe
from embedder.training.views import Views

SAVE_EVERY_S = 120.0


@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    seconds: float = 0.0  # training time spent, over every resumed part of the run
    images: int = 0
    last_loss: float = float("nan")
    resumed: bool = False


def save(parts: Parts, state: Progress, out: Path) -> None:
    """checkpoint.pt, atomically: the weights (also what a later run's --base reads), optimiser and progress."""
    payload: dict[str, Any] = {
        "model": parts.model.state_dict(),
        "heads": [h.state_dict() for h in parts.heads()],
        "opt": parts.opt.state_dict(),
        "progress": vars(state),
        "image_size": parts.model.image_size,
    }
    tmp = out / (CHECKPOINT + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(out / CHECKPOINT)


def resume(parts: Parts, out: Path) -> Progress:
    ck = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
    parts.model.load_state_dict(ck["model"])
    for head, st in zip(parts.heads(), ck["heads"], strict=True):
        head.load_state_dict(st)
    parts.opt.load_state_dict(ck["opt"])
    return Progress(**(ck["progress"] | {"resumed": True}))


def _step(parts: Parts, x: torch.Tensor, cat: torch.Tensor, prod: torch.Tensor) -> float:
    emb = parts.model(x.float().contiguous(memory_format=torch.channels_last))
    loss = parts.category_loss(emb, cat)
    if parts.product_loss is not None and bool((prod >= 0).any()):
        keep = prod >= 0
        loss = loss + parts.product_loss(emb[keep], prod[keep])
    parts.opt.zero_grad(set_to_none=True)
    loss.backward()
    parts.opt.step()
    return float(loss.item())


def _set_lr(parts: Parts, step: int, warmup: int, progress: float) -> None:
    warm = min(1.0, (step + 1) / max(1, warmup))
    for group in parts.opt.param_groups:
        group["lr"] = group["base"] * warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def imprint(parts: Parts, data: Views, batch: int = 64) -> None:
    """Start every class weight of the CosFace heads at the mean embedding of its catalog images: the first
    steps then refine a sensible metric instead of chasing random class centres (what a short budget needs)."""
    parts.model.eval()
    emb = torch.cat(
        [
            parts.model(torch.from_numpy(data.catalog_images(s, s + batch).transpose(0, 3, 1, 2).copy()).float())
            for s in range(0, len(data), batch)
        ]
    )
    for head, labels in ((parts.category_loss, data.category), (parts.product_loss, data.product)):
        if head is None:
            continue
        y = torch.from_numpy(labels)
        keep = y >= 0
        sums = torch.zeros_like(head.weight).index_add_(0, y[keep], emb[keep])
        head.weight.copy_(torch.nn.functional.normalize(sums, dim=1, eps=1e-12))


@dataclass
class _Clock:
    """Progress of a run: max(step progress, wall-clock progress), 0..1."""

    total_steps: int
    budget_s: float
    start: float

    def progress(self, step: int) -> float:
        return max(step / self.total_steps, (time.monotonic() - self.start) / self.budget_s)


def train(parts: Parts, data: Views, recipe: Recipe, state: Progress) -> Progress:
    """Run until `recipe.epochs` or `recipe.minutes` of training, whichever ends first; cosine-annealed over
    max(step progress, time progress), so a budget-stopped run still ends at a learning rate near zero."""
    clock = _Clock(
        max(1, data.batches_per_epoch(recipe.batch) * recipe.epochs),
        max(1.0, recipe.minutes * 60.0),
        time.monotonic() - state.seconds,
    )
    if state.step == 0 and recipe.class_init == "imprint":
        imprint(parts, data)  # inside the budget: it is part of training
    progress = clock.progress(state.step)
    with tqdm(total=100, desc="train", unit="%", disable=not recipe.progress, initial=int(100 * progress)) as bar:
        while progress < 1.0 and state.epoch < recipe.epochs:
            progress = _epoch(parts, data, recipe, state, clock, bar)
            save(parts, state, recipe.out)
    return state


def train_mode(parts: Parts, batchnorm: str) -> None:
    """Training mode, but for what keeps its ImageNet state under the recipe's `batchnorm` (see Recipe)."""
    parts.model.train()
    if batchnorm == "batch":  # the frozen stem and blocks keep ImageNet statistics and skip drop-connect
        for frozen in parts.frozen:
            frozen.eval()
        return
    # Every BatchNorm keeps its ImageNet statistics (its scale and shift still learn): batches of 32-64 views
    # give noisy statistics, and a short run would otherwise train on batch statistics it is never served with.
    for mod in parts.model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.eval()


def _epoch(parts: Parts, data: Views, recipe: Recipe, state: Progress, clock: _Clock, bar: tqdm[Any]) -> float:
    """One pass over the data (or up to the end of the budget); returns the progress reached."""
    train_mode(parts, recipe.batchnorm)
    last_save, progress = time.monotonic(), clock.progress(state.step)
    warmup = min(recipe.warmup_steps, clock.total_steps // 10)
    for x, cat, prod in data.epoch(recipe.batch, state.epoch):
        progress = clock.progress(state.step)
        if progress >= 1.0:
            # The time that ended the run is part of it: a `--resume` must find the budget spent, not a step short.
            state.seconds = max(state.seconds, time.monotonic() - clock.start)
            return progress
        _set_lr(parts, state.step, warmup, progress)
        state.last_loss = _step(parts, x, cat, prod)
        state.step, state.images = state.step + 1, state.images + len(cat)
        state.seconds = time.monotonic() - clock.start
        if int(100 * progress) > bar.n:
            rate = state.images / max(state.seconds, 1e-9)
            bar.set_postfix(epoch=state.epoch, loss=f"{state.last_loss:.3f}", img_s=f"{rate:.0f}", refresh=False)
            bar.update(int(100 * progress) - bar.n)
        if time.monotonic() - last_save > SAVE_EVERY_S:
            save(parts, state, recipe.out)
            last_save = time.monotonic()
    state.epoch += 1
    # The progress that ends the run is the one saved with it: read from a later clock, the run could end at
    # 1.0 while the checkpoint said 44.999 of 45 s, and a `--resume` would take one more step.
    state.seconds = time.monotonic() - clock.start
    return max(state.step / clock.total_steps, state.seconds / clock.budget_s)
