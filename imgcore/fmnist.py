"""Fashion-MNIST loading and rendering into catalog images and shopper-style photos.

Shared by the model scripts (training, evaluation), the catalog builder and the tests, so that
everyone renders items the same way. Pure numpy/cv2: no torch here.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")

# Names as shipped by the upstream dataset (and the Debian package).
_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    header = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise ValueError(f"{path}: not an idx file of the expected kind (magic {int(header[0])})")
    shape = tuple(int(d) for d in header[1:])
    offset = 4 * (1 + ndim)
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise ValueError(f"{path}: truncated ({len(data) - offset} bytes, expected {expected})")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def load_fmnist(split: Literal["train", "test"], root: Path = DEFAULT_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N,28,28], labels int64 [N]) for one split (bright item on black)."""
    if split not in _FILES:
        raise ValueError(f"unknown split {split!r}")
    img_name, lbl_name = _FILES[split]
    if not (Path(root) / img_name).exists():
        raise FileNotFoundError(
            f"Fashion-MNIST not found under {root}: install it with `apt-get install dataset-fashion-mnist`"
        )
    images = _read_idx(Path(root) / img_name, _IDX_IMAGES_MAGIC, 3)
    labels = _read_idx(Path(root) / lbl_name, _IDX_LABELS_MAGIC, 1).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images.copy(), labels


def _upscale(img28: np.ndarray, size: int) -> np.ndarray:
    # Cubic keeps edges smooth when upscaling 4x; cv2 saturates uint8 so overshoot is clipped.
    return np.asarray(cv2.resize(img28, (size, size), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)


def render_catalog(img28: np.ndarray, size: int = 112) -> np.ndarray:
    """A catalog image: the item dark on a white background, HxWx3 uint8 RGB."""
    if img28.shape != (28, 28):
        raise ValueError(f"expected a 28x28 image, got {img28.shape}")
    inverted = 255 - np.asarray(img28, dtype=np.uint8)
    big = _upscale(inverted, size)
    return np.repeat(big[:, :, None], 3, axis=2)


def render_shop_photo(img28: np.ndarray, rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """A shopper's photo: the item at 35-90 % of the frame, anywhere, on a light tinted noisy background.

    The FMNIST pixel value is used as ink coverage (alpha), so the item keeps its texture but takes a
    dark, slightly coloured ink, as a photo of a real garment would. HxWx3 uint8 RGB.
    """
    if img28.shape != (28, 28):
        raise ValueError(f"expected a 28x28 image, got {img28.shape}")
    item_px = max(8, int(round(size * rng.uniform(0.35, 0.90))))
    alpha = _upscale(np.asarray(img28, dtype=np.uint8), item_px).astype(np.float32) / 255.0
    x0 = int(rng.integers(0, size - item_px + 1))
    y0 = int(rng.integers(0, size - item_px + 1))

    # Light background with a slight colour cast, and a gentle left-right lighting gradient.
    base = rng.uniform(200.0, 250.0) + rng.uniform(-12.0, 12.0, size=3)
    gradient = np.linspace(-1.0, 1.0, size, dtype=np.float32)[None, :, None] * rng.uniform(-10.0, 10.0)
    canvas = np.broadcast_to(base.astype(np.float32), (size, size, 3)) + gradient
    ink = rng.uniform(0.0, 70.0, size=3).astype(np.float32)

    region = canvas[y0 : y0 + item_px, x0 : x0 + item_px]
    a = alpha[:, :, None]
    canvas[y0 : y0 + item_px, x0 : x0 + item_px] = region * (1.0 - a) + ink * a

    noise = np.asarray(rng.normal(0.0, rng.uniform(1.0, 6.0), size=canvas.shape), dtype=np.float32)
    canvas += noise
    photo = np.clip(canvas, 0.0, 255.0).astype(np.uint8)
    if rng.random() < 0.5:
        sigma = float(rng.uniform(0.4, 1.2)) * size / 112.0
        photo = np.asarray(cv2.GaussianBlur(photo, (0, 0), sigma), dtype=np.uint8)
    return photo
