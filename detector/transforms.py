"""Pure preprocessing for detectors: resize (stretch or letterbox), scale, lay out; and the way back.

Everything a model expects is read from its card's `input` section, because resize and scaling
conventions differ between training frameworks and a wrong guess predicts silently wrong boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from imgcore.errors import StoreError

INTERPOLATIONS: dict[str, int] = {
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
}
# pixel value v (0..255) -> (v - offset) / divisor
SCALINGS: dict[str, tuple[float, float]] = {"0..1": (0.0, 255.0), "0..255": (0.0, 1.0), "-1..1": (127.5, 127.5)}


@dataclass(frozen=True)
class InputSpec:
    """The card's `input` section, validated once at load time."""

    name: str | None
    height: int
    width: int
    layout: str  # "NCHW" | "NHWC"
    color: str  # "RGB" | "BGR"
    scaling: str
    resize: str  # "stretch" | "letterbox"
    interpolation: str
    pad_value: int  # letterbox fill, in 0..255 pixel units
    # Per-photo input (stretch only; None: every photo at height x width): see model_size.
    aspect_power: float | None = None
    stride: int = 32

    @classmethod
    def from_card(cls, spec: dict[str, Any]) -> InputSpec:
        try:
            height, width = (int(v) for v in spec["size"])  # [height, width], the order of the NCHW shape
            out = cls(
                name=spec.get("name"),
                height=height,
                width=width,
                layout=str(spec.get("layout", "NCHW")).upper(),
                color=str(spec.get("color", "RGB")).upper(),
                scaling=str(spec.get("scaling", "0..1")),
                resize=str(spec.get("resize", "stretch")),
                interpolation=str(spec.get("interpolation", "linear")),
                pad_value=int(spec.get("pad_value", 114)),
                aspect_power=None if spec.get("aspect_power") is None else float(spec["aspect_power"]),
                stride=int(spec.get("stride", 32)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"card input section is invalid: {exc!r}") from exc
        checks = {
            "layout": (out.layout, ("NCHW", "NHWC")),
            "color": (out.color, ("RGB", "BGR")),
            "scaling": (out.scaling, tuple(SCALINGS)),
            "resize": (out.resize, ("stretch", "letterbox")),
            "interpolation": (out.interpolation, tuple(INTERPOLATIONS)),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise StoreError(f"card input.{key}={value!r} is not one of {list(allowed)}")
        if out.height <= 0 or out.width <= 0:
            raise StoreError(f"card input.size must be positive, got {[out.height, out.width]}")
        if out.aspect_power is not None:
            if out.resize != "stretch" or out.height != out.width or not 0.0 <= out.aspect_power <= 1.0:
                raise StoreError("card input.aspect_power needs resize 'stretch', a square size and 0 <= power <= 1")
            if out.stride <= 0 or out.height % out.stride:
                raise StoreError(f"card input.size must be a multiple of input.stride, got {out.height}, {out.stride}")
        return out

    def shapes(self) -> list[tuple[int, int]]:
        """Every (height, width) the model is run at: one, or each short side of a per-photo input, both ways."""
        if self.aspect_power is None:
            return [(self.height, self.width)]
        sides = range(self.stride, self.height + 1, self.stride)
        return sorted({(self.height, s) for s in sides} | {(s, self.height) for s in sides})


def model_size(spec: InputSpec, height: int, width: int) -> tuple[int, int]:
    """The (height, width) a photo is stretched to. With `aspect_power` p the long side is the card's size and
    the short side that size times (short / long) ** p, rounded up to the stride: p = 0 is the square stretch,
    p = 1 keeps the photo's proportions. A square stretch squeezes the people of a wide photo to half their
    width (NanoDet-m then misses most of them) and spends a third of its pixels on it; keeping the proportions
    entirely turned horses into cows (tests/data/photos/horses.jpg). docs/benchmarks.md has the numbers."""
    if spec.aspect_power is None:
        return spec.height, spec.width
    long_side = spec.height
    ratio = min(height, width) / max(height, width)
    short = math.ceil(long_side * ratio**spec.aspect_power / spec.stride) * spec.stride
    short = min(long_side, max(spec.stride, short))
    return (long_side, short) if height >= width else (short, long_side)


@dataclass(frozen=True)
class Geometry:
    """How an original image was placed into the model input: model = original * scale + pad."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    orig_width: int
    orig_height: int
    input_hw: tuple[int, int]  # the model input's (height, width) this photo was placed into

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy boxes in model-input pixels -> original pixels, clipped to the image."""
        out = np.empty_like(boxes, dtype=np.float64)
        out[:, [0, 2]] = (boxes[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (boxes[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, self.orig_width)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, self.orig_height)
        return out


def resize_for_model(image: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """Stretch (to model_size), or letterbox (keep aspect, centre, pad), an HxWx3 image to the model's input."""
    h, w = image.shape[:2]
    interp = INTERPOLATIONS[spec.interpolation]
    if spec.resize == "stretch":
        size_h, size_w = model_size(spec, h, w)
        out = cv2.resize(image, (size_w, size_h), interpolation=interp)
        return out, Geometry(size_w / w, size_h / h, 0.0, 0.0, w, h, (size_h, size_w))
    scale = min(spec.width / w, spec.height / h)
    new_w = min(spec.width, max(1, int(round(w * scale))))
    new_h = min(spec.height, max(1, int(round(h * scale))))
    pad_x = (spec.width - new_w) // 2
    pad_y = (spec.height - new_h) // 2
    out = np.full((spec.height, spec.width, 3), spec.pad_value, dtype=np.uint8)
    out[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = cv2.resize(image, (new_w, new_h), interpolation=interp)
    # The scale actually applied per axis (after rounding to whole pixels), so mapping back is exact.
    return out, Geometry(new_w / w, new_h / h, float(pad_x), float(pad_y), w, h, (spec.height, spec.width))


def to_tensor(resized: np.ndarray, spec: InputSpec) -> np.ndarray:
    """HxWx3 uint8 RGB at model size -> float32 batch of one in the card's colour, scaling and layout."""
    img = resized[:, :, ::-1] if spec.color == "BGR" else resized
    offset, divisor = SCALINGS[spec.scaling]
    x = (img.astype(np.float32) - np.float32(offset)) / np.float32(divisor)
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])
