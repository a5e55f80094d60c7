"""A picture's fingerprint for near-duplicate listings (issue 28): what stays the same when a shop re-uploads a
photo re-encoded, resized, tinted or lightly cropped.

An embedder is trained to find the product and its kind, not the exact picture, and how close it puts
look-alikes depends on the model (fmnist-lite0 1.2.0, category-trained: the median demo item had another within
cosine 0.9965), so no embedding threshold tells a copy from a look-alike for every model. The fingerprint is
the picture itself, small: grey, cut to its
foreground box (`imgcore.foreground`), `SIDE` x `SIDE` by area averaging, mean removed, unit length, so
brightness, contrast and colour casts drop out and JPEG noise averages away. A light crop moves the frame, so
each picture also gets the fingerprints of its centre cut by each of `CROPS` per side; two pictures score the
best cosine of one's full fingerprint against any of the other's (bench/duplicates.py calibrates
`DUPLICATE_PRINT_SCORE` on such copies).
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from imgcore.foreground import foreground_box

SIDE = 16
CROPS = (0.0, 0.02, 0.04)  # share of each side cut before fingerprinting; the first is the picture itself
DIM = SIDE * SIDE
DUPLICATE_PRINT_SCORE = 0.985


def _print(image: np.ndarray) -> np.ndarray:
    box = foreground_box(image)
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        image = image[y1:y2, x1:x2]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 1e-6 else small


def fingerprints(image: np.ndarray) -> np.ndarray:
    """[len(CROPS), DIM] float32: the picture's fingerprint, then its centre crops'. HxW or HxWx3 uint8."""
    h, w = image.shape[:2]
    out = []
    for share in CROPS:
        top, left = int(round(h * share)), int(round(w * share))
        out.append(_print(image[top : h - top, left : w - left]))
    return np.stack(out)


def encoded_fingerprints(data: bytes) -> np.ndarray | None:
    """The fingerprints of an encoded picture (a thumbnail: JPEG, PNG or WebP); None when it does not decode."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    return None if image is None or min(image.shape[:2]) < 4 else fingerprints(image)


def print_score(a: np.ndarray, b: np.ndarray) -> float:
    """Two pictures' score as the duplicates finder scores a pair: the best of their whole fingerprints' cosine
    and either one's crops against the other whole (either may be the cropped copy)."""
    return float(max(a[0] @ b[0], np.max(a[1:] @ b[0]), np.max(b[1:] @ a[0])))


def prints_to_b64(prints: np.ndarray) -> str:
    """A picture's fingerprints on the wire: base64 of little-endian float16 (1.5 KiB; 1e-3 of a score)."""
    return base64.b64encode(np.asarray(prints, "<f2").tobytes()).decode("ascii")


def prints_from_b64(text: object) -> np.ndarray | None:
    """`prints_to_b64` read back as [len(CROPS), DIM] float32; None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    if len(raw) != 2 * len(CROPS) * DIM:
        return None
    prints = np.frombuffer(raw, "<f2").astype(np.float32).reshape(len(CROPS), DIM)
    return prints if np.isfinite(prints).all() else None
