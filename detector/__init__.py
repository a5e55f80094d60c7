"""Object detection: a card-described ONNX model -> `Detection`s in original pixel coordinates."""

from detector.detector import Detector
from detector.types import Box, Detection

__all__ = ["Box", "Detection", "Detector"]
