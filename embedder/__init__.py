"""Metric-learning embedder: image or boxes -> L2-normalised vectors, through ONNX Runtime.

Plain arguments and numpy arrays only: no HTTP, no settings, no environment.
"""

from embedder.model import Embedder
from embedder.transforms import Box, foreground_box

__all__ = ["Box", "Embedder", "foreground_box"]
