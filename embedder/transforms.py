"""Pure, stateless image transforms of the embedder: crop, pad to square, resize, layout.

Training (embedder/training, behind `imgsearch train` and the model scripts) and serving use these same
functions, so that the model sees at serving time exactly the kind of input it was trained on.
Images are HxWx3 uint8 RGB; boxes are (x1, y1, x2, y2) in pixels, x2/y2 exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from imgcore.foreground import foreground_box as foreground_box  # the whole photo's crop; detector shares it
from imgcore.foreground import frame_median
from imgcore.pixels import chw_batch as chw_batch  # the model's batch layout; the rebuild uses it too

Box = tuple[float, float, float, float]

INTERPOLATIONS: dict[str, int] = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Gray, RGB or RGBA uint8 -> HxWx3 uint8 RGB (alpha dropped: decoders flatten it first)."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"expected HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")


def border_colour(image: np.ndarray) -> np.ndarray:
    """Per-channel median of a thin frame around the image: the background of a product photo."""
    return frame_median(as_rgb(image)).astype(np.uint8)


def square_box(box: Box, margin: float = 0.0) -> tuple[int, int, int, int]:
    """The integer square centred on `box`, with side = longer side * (1 + 2 * margin)."""
    x1, y1, x2, y2 = box
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"empty box {box}")
    side = max(1, int(round(max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin))))
    sx1 = int(round((x1 + x2) / 2.0 - side / 2.0))
    sy1 = int(round((y1 + y2) / 2.0 - side / 2.0))
    return sx1, sy1, sx1 + side, sy1 + side


def crop_square(image: np.ndarray, box: Box | None = None, margin: float = 0.0) -> np.ndarray:
    """Crop `box` (whole image if None) grown by `margin` into a square, never cutting the item.

    Parts of the square outside the image are filled with the colour of the crop's own border
    (the background around the item), not black: black bars would look like part of the item.
    """
    img = as_rgb(image)
    h, w = img.shape[:2]
    sx1, sy1, sx2, sy2 = square_box(box if box is not None else (0.0, 0.0, float(w), float(h)), margin)
    ix1, iy1, ix2, iy2 = max(sx1, 0), max(sy1, 0), min(sx2, w), min(sy2, h)
    if ix2 <= ix1 or iy2 <= iy1:
        raise ValueError(f"box {box} lies outside the {w}x{h} image")
    inside = img[iy1:iy2, ix1:ix2]
    if (ix1, iy1, ix2, iy2) == (sx1, sy1, sx2, sy2):
        return np.ascontiguousarray(inside)
    # One C call: numpy's fill of a side x side x 3 array with a colour, then the copy, took ~1.7 ms for a
    # 640 px photo (every whole scene embedded), copyMakeBorder 0.05 ms; the same pixels.
    fill = tuple(int(v) for v in border_colour(inside))
    return cv2.copyMakeBorder(
        np.ascontiguousarray(inside), iy1 - sy1, sy2 - iy2, ix1 - sx1, sx2 - ix2, cv2.BORDER_CONSTANT, value=fill
    )


def resize_square(image: np.ndarray, size: int, interpolation: str = "area") -> np.ndarray:
    """Resize a square image to size x size. 'area' means INTER_AREA when shrinking and
    INTER_LINEAR when enlarging (INTER_AREA degrades to nearest-like blocks when enlarging)."""
    h, w = image.shape[:2]
    if h == size and w == size:
        return image
    if interpolation == "area" and size > max(h, w):
        flag = cv2.INTER_LINEAR
    else:
        flag = INTERPOLATIONS[interpolation]
    return np.asarray(cv2.resize(image, (size, size), interpolation=flag), dtype=np.uint8)


def to_chw(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32 in 0..255 (scaling happens inside the ONNX graph)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)


def prepare_pixels(
    image: np.ndarray, box: Box | None, size: int, margin: float, interpolation: str = "area"
) -> np.ndarray:
    """An item cropped/padded to square and resized: size x size x 3 uint8, the model's pixels before layout."""
    return resize_square(crop_square(image, box, margin), size, interpolation)


def prepare(image: np.ndarray, box: Box | None, size: int, margin: float, interpolation: str = "area") -> np.ndarray:
    """Full preprocessing of one item: crop/pad to square, resize, to [3,size,size] float32."""
    return to_chw(prepare_pixels(image, box, size, margin, interpolation))


def clip_boxes(boxes: Sequence[Box], width: int, height: int) -> list[Box]:
    """Clip boxes to the image; raise on boxes that are empty after clipping."""
    out: list[Box] = []
    for x1, y1, x2, y2 in boxes:
        c = (max(0.0, float(x1)), max(0.0, float(y1)), min(float(width), float(x2)), min(float(height), float(y2)))
        if c[2] <= c[0] or c[3] <= c[1]:
            raise ValueError(f"box {(x1, y1, x2, y2)} is empty inside the {width}x{height} image")
        out.append(c)
    return out
