"""The training history of a checkpoint: one record per stage (a run, or a run continued with --init).

train.py stores the earlier stages in each checkpoint's "prior"; checkpoints written before that
kept only the running totals, so for them the chain of --init paths is followed on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TRAIN_IMAGES = 60000


def stage_record(ck: dict[str, Any]) -> dict[str, Any]:
    args = ck["args"]
    return {
        "init": bool(args.get("init")),
        "budget_min": args["budget_min"],
        "epochs": round(ck["step"] * args["batch"] / TRAIN_IMAGES, 2),
        "seconds": round(float(ck["seconds"]), 1),
        "lr_backbone": args["lr_backbone"],
        "lr_head": args["lr_head"],
        "p_catalog": args["p_catalog"],
        "p_crop": args["p_crop"],
        "freeze_blocks": args["freeze_blocks"],
        "torch_threads": args.get("threads", 1),
        "seed": args["seed"],
    }


def earlier_stages(ck: dict[str, Any]) -> list[dict[str, Any]]:
    prior = ck.get("prior", {})
    if "stages" in prior:
        return list(prior["stages"])
    init = ck["args"].get("init")
    if not init:
        return []
    parent = torch.load(Path(init), map_location="cpu", weights_only=False)
    return stages(parent)


def stages(ck: dict[str, Any]) -> list[dict[str, Any]]:
    """Every stage that produced this checkpoint, oldest first."""
    return [*earlier_stages(ck), stage_record(ck)]
