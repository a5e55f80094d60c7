"""The network, losses and optimiser of a run, from its recipe and base."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from embedder.training.net import CosFace, EmbedNet
from embedder.training.recipe import BASE_GENERAL, Recipe

CHECKPOINT = "checkpoint.pt"


@dataclass
class Parts:
    model: EmbedNet
    category_loss: CosFace
    product_loss: CosFace | None
    opt: torch.optim.Optimizer
    frozen: list[nn.Module]

    def heads(self) -> list[nn.Module]:
        return [m for m in (self.category_loss, self.product_loss) if m is not None]


def base_checkpoint(base: str) -> Path | None:
    """The checkpoint of an earlier run's folder, or None for the general embedder's backbone."""
    if base == BASE_GENERAL:
        return None
    path = Path(base).expanduser()
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"--base {base}: neither {BASE_GENERAL} nor a folder with {CHECKPOINT}")
    return path


def build(recipe: Recipe, categories: int, products: int) -> Parts:
    """EmbedNet from the base (an earlier run's weights where they fit), CosFace heads, AdamW in two groups."""
    model = EmbedNet(recipe.image_size, recipe.dim, pretrained=base_checkpoint(recipe.base) is None, head=recipe.head)
    ck_path = base_checkpoint(recipe.base)
    if ck_path is not None:
        state = torch.load(ck_path, map_location="cpu", weights_only=False)["model"]
        if state["head.weight"].shape != model.head.weight.shape:  # another --dim: keep the backbone only
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
        model.load_state_dict(state, strict=False)
    for param in model.parameters():  # channels_last: ~1.4x faster convolutions on CPU
        if param.dim() == 4:
            param.data = param.data.contiguous(memory_format=torch.channels_last)
    bb = model.backbone
    blocks = bb.get_submodule("_blocks")
    assert isinstance(blocks, nn.ModuleList)
    frozen = [bb.get_submodule("_conv_stem"), bb.get_submodule("_bn0"), *blocks[: recipe.freeze_blocks]]
    for mod in frozen:
        for p in mod.parameters():
            p.requires_grad_(False)
    category_loss = CosFace(recipe.dim, categories)
    product_loss = CosFace(recipe.dim, products) if products > 0 else None
    head_params = [*model.head.parameters(), *category_loss.parameters()]
    if product_loss is not None:
        head_params += list(product_loss.parameters())
    opt = torch.optim.AdamW(
        [
            {"params": [p for p in bb.parameters() if p.requires_grad], "lr": recipe.lr_backbone},
            {"params": head_params, "lr": recipe.lr_head},
        ],
        weight_decay=1e-4,
    )
    for group in opt.param_groups:
        group["base"] = group["lr"]
    return Parts(model, category_loss, product_loss, opt, frozen)
