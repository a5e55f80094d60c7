"""Where the items lie in a photo of items on a plain background: the foreground analysis.

The embedder crops a whole photo to its foreground (`foreground_box`); the detector service finds the separate
items of a flat-lay (`imgcore.items.item_boxes`). Both read the same mask: pixels whose blurred colour differs from the
background, the median colour of a thin frame around the photo. A frame that is no plain background (a
full-frame photo: fur, grass, a street at the border) means there is no foreground to find, and callers use
the whole photo. Images are HxWx3 uint8 RGB; boxes are (x1, y1, x2, y2) in pixels, x2/y2 exclusive.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

Box = tuple[float, float, float, float]
N = TypeVar("N", int, float)

# The frame of a product photo or flat-lay varies by a few levels (noise, a lighting gradient: at most ~10 in
# rendered shop photos); the frames of full-frame photos vary by 25 and more (tests/data/photos).
MAX_BACKGROUND_SPREAD = 16.0
# Items may touch the frame (a catalog's trousers run from top to bottom: up to ~30 % of the frame), but a
# frame mostly unlike its own median is no background.
MAX_FRAME_OFF = 0.5
# Photos are analysed at most this large (longer side): the mask needs no finer grain, and the blur's cost grows
# with the area (a 2048 px photo took ~0.8 s at full size).
ANALYSIS_SIDE = 384


def border_width(height: int, width: int) -> int:
    """A thin border: 2 % of the shorter side, at least 1 pixel."""
    return max(1, int(round(0.02 * min(height, width))))


def frame_pixels(image: np.ndarray) -> np.ndarray:
    """The pixels of a thin frame around the image, one row each (N x channels)."""
    h, w = image.shape[:2]
    b = border_width(h, w)
    parts = [image[:b], image[h - b :], image[:, :b], image[:, w - b :]]
    return np.concatenate([p.reshape(-1, image.shape[2] if image.ndim == 3 else 1) for p in parts])


def box_union(a: tuple[N, N, N, N], b: tuple[N, N, N, N]) -> tuple[N, N, N, N]:
    """The smallest box holding both (x1, y1, x2, y2) boxes."""
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _frame_rows(image: np.ndarray) -> np.ndarray:
    """The frame's pixels with channels as rows ([C, N]): numpy reduces along the first axis far faster."""
    return np.ascontiguousarray(frame_pixels(image).T)


@dataclass(frozen=True)
class Parts:
    """The foreground of a photo: whether its frame is a plain background, and the boxes of its separate
    parts (connected regions unlike the background, specks dropped), largest first, with their pixel areas."""

    plain: bool
    boxes: list[tuple[int, int, int, int]]
    areas: list[int]


def _shrunk(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """(HxWxC image with its longer side at most `max_side`, the scale applied)."""
    if image.ndim == 2:
        image = image[:, :, None]
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = (
        image
        if scale == 1.0
        else cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    )
    return (small[:, :, None] if small.ndim == 2 else small), scale  # cv2 drops a single channel's axis


def plain_frame(image: np.ndarray, threshold: float = 28.0, max_side: int = ANALYSIS_SIDE) -> bool:
    """Whether the photo's frame is a plain background (a product shot or flat-lay, not a scene)."""
    small, _ = _shrunk(image, max_side)
    return _background(_blurred(small)[1], threshold) is not None


def foreground_parts(
    image: np.ndarray,
    threshold: float = 28.0,
    min_area: float = 0.0005,
    max_side: int = ANALYSIS_SIDE,
    join: float | None = None,
) -> Parts:
    """The mask's connected parts, in the image's pixels; `plain` False (and no parts) when the frame is no
    plain background. Photos larger than `max_side` are analysed shrunk to it. With `join`, parts that pixels
    `join` times as far from the background as `threshold` asks connect are one part."""
    h, w = image.shape[:2]
    small, scale = _shrunk(image, max_side)
    parts = _parts(small, threshold, min_area, join)
    if scale == 1.0:
        return parts
    sx, sy = w / small.shape[1], h / small.shape[0]
    boxes = [
        (int(x1 * sx), int(y1 * sy), min(w, int(np.ceil(x2 * sx))), min(h, int(np.ceil(y2 * sy))))
        for x1, y1, x2, y2 in parts.boxes
    ]
    return Parts(parts.plain, boxes, [int(a * sx * sy) for a in parts.areas])


def _blurred(image: np.ndarray) -> tuple[tuple[int, int], np.ndarray]:
    """((h, w), the image blurred as float32): sensor noise and JPEG ringing do not count."""
    h, w = image.shape[:2]
    sigma = max(0.8, 0.008 * min(h, w))
    return (h, w), cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma).reshape(h, w, -1)


def _median(rows: np.ndarray) -> np.ndarray:
    """The median of each row of a 2-D array, float32 (np.median's values by one partition: ~2x faster)."""
    n = rows.shape[1]
    mid = np.partition(rows, [(n - 1) // 2, n // 2], axis=1)
    return (mid[:, (n - 1) // 2].astype(np.float32) + mid[:, n // 2]) / 2.0


def frame_median(image: np.ndarray) -> np.ndarray:
    """The per-channel median colour of the image's thin frame (float32, one value per channel)."""
    return _median(_frame_rows(image))


def _background(blurred: np.ndarray, threshold: float) -> tuple[np.ndarray, float] | None:
    """(background colour, the bar a pixel must differ from it by), or None when the frame is no plain
    background."""
    frame = _frame_rows(blurred)  # float32, as blurred
    background = _median(frame)
    frame_dev = np.abs(frame - background[:, None]).max(axis=0)
    spread = float(_median(frame_dev[None, :])[0])  # a lit background varies a little: the bar rises with it
    bar = threshold + 3.0 * spread
    if spread > MAX_BACKGROUND_SPREAD or np.count_nonzero(frame_dev > bar) > MAX_FRAME_OFF * frame_dev.size:
        return None
    return background, bar


def _components(blurred: np.ndarray, background: np.ndarray, bar: float) -> tuple[int, np.ndarray, np.ndarray]:
    """Connected regions of the pixels unlike the background by more than `bar`: (count, labels, stats)."""
    # Foreground: |pixel - background| > bar in some channel, i.e. not within [bg - bar, bg + bar] in all of
    # them. One cv2.inRange pass; numpy's per-pixel channel maximum of the float difference took ~6 of the
    # ~9 ms of a 700 px shop photo.
    bounds = [(background - bar).astype(np.float64), (background + bar).astype(np.float64)]
    mask = (cv2.inRange(blurred, *bounds) == 0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return count, labels, stats


def _joined(labels: np.ndarray, count: int, faint: np.ndarray) -> np.ndarray:
    """For each region of `labels`, the region of the fainter mask `faint` holding it (a superset mask: each
    region lies inside exactly one of its regions)."""
    seen = labels > 0
    out = np.zeros(count, dtype=np.int64)
    out[labels[seen]] = faint[seen]
    return out


def _parts(image: np.ndarray, threshold: float, min_area: float, join: float | None = None) -> Parts:
    # Per channel, so a light blue shirt on a white table stands out as much as a dark one.
    (h, w), blurred = _blurred(image)
    found_background = _background(blurred, threshold)
    if found_background is None:
        return Parts(False, [], [])
    background, bar = found_background
    count, labels, stats = _components(blurred, background, bar)
    big = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area * h * w]
    group = np.arange(count)
    if join is not None and len(big) > 1:
        # The bar's threshold share scaled by `join`, its noise share (3x the frame's spread) kept.
        group = _joined(labels, count, _components(blurred, background, bar - (1.0 - join) * threshold)[1])
    united: dict[int, tuple[tuple[int, int, int, int], int]] = {}
    for i in big:
        x, y = int(stats[i, cv2.CC_STAT_LEFT]), int(stats[i, cv2.CC_STAT_TOP])
        box = (x, y, x + int(stats[i, cv2.CC_STAT_WIDTH]), y + int(stats[i, cv2.CC_STAT_HEIGHT]))
        area = int(stats[i, cv2.CC_STAT_AREA])
        if (other := united.get(int(group[i]))) is not None:
            box, area = box_union(other[0], box), other[1] + area
        united[int(group[i])] = (box, area)
    found = sorted(united.values(), key=lambda part: -part[1])
    return Parts(True, [box for box, _ in found], [area for _, area in found])


def _square(box: tuple[float, float, float, float], pad: float, min_side: float, w: int, h: int) -> Box:
    """`box` padded by `pad` of its longer side, squared, at least `min_side` px, clipped to the image."""
    x1, y1, x2, y2 = box
    side = max(max(x2 - x1, y2 - y1) * (1.0 + 2.0 * pad), min_side)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    sx1, sy1 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    sx2, sy2 = sx1 + int(round(side)), sy1 + int(round(side))
    return (float(max(sx1, 0)), float(max(sy1, 0)), float(min(sx2, w)), float(min(sy2, h)))


def foreground_box(
    image: np.ndarray, threshold: float = 28.0, min_area: float = 0.0005, pad: float = 0.04, min_side: float = 0.25
) -> Box | None:
    """Box around the item in a photo of one item on a plain background; None (search the whole photo) when
    nothing stands out or the frame is no plain background.

    The parts' union, padded and squared, never smaller than `min_side` of the shorter side (a speck is no
    item), clipped to the image.
    """
    parts = foreground_parts(image, threshold, min_area)
    if not parts.boxes:
        return None
    h, w = image.shape[:2]
    union = functools.reduce(box_union, parts.boxes)
    return _square(union, pad, min_side * min(h, w), w, h)
