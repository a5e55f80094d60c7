"""The training history of a run folder (RUN/stages.json): the recipe of its last stage and one record per stage
(a run, or a run continued from an earlier one's weights with --init), which export.py puts in the card.

The shared loop's checkpoint holds weights and progress only; the stages live next to it, so a further stage
finds the history of the run it starts from in that run's folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from embedder.training.loop import Progress
from embedder.training.recipe import Recipe

STAGES = "stages.json"


def stage_record(recipe: Recipe, state: Progress, images: int, init: bool) -> dict[str, Any]:
    """The fields the card's `training.stages` has listed since version 1.1.0."""
    return {
        "init": init,
        "budget_min": recipe.minutes,
        "epochs": round(state.images / max(1, images), 2),
        "seconds": round(state.seconds, 1),
        "lr_backbone": recipe.lr_backbone,
        "lr_head": recipe.lr_head,
        "p_catalog": recipe.p_catalog,
        "p_crop": recipe.p_crop,
        "freeze_blocks": recipe.freeze_blocks,
        "torch_threads": recipe.threads,
        "seed": recipe.seed,
    }


def read_history(run: Path) -> dict[str, Any]:
    """{"recipe": the last stage's recipe, "stages": [oldest first]} of a run folder (or of its checkpoint)."""
    folder = run if run.is_dir() else run.parent
    history: dict[str, Any] = json.loads((folder / STAGES).read_text())
    return history


def write_history(recipe: Recipe, state: Progress, images: int, init: Path | None) -> dict[str, Any]:
    """Record this stage after the earlier ones (those of the --init run), atomically; return the history."""
    earlier = read_history(init)["stages"] if init is not None else []
    history = {
        # No validation split: this model is evaluated on the TEST split (models/evaluate.py).
        "recipe": {k: v for k, v in recipe.to_card().items() if k != "val_fraction"} | {"images": images},
        "stages": [*earlier, stage_record(recipe, state, images, init is not None)],
    }
    tmp = recipe.out / (STAGES + ".tmp")
    tmp.write_text(json.dumps(history, indent=2) + "\n")
    tmp.replace(recipe.out / STAGES)
    return history
