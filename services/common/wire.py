"""Internal wire formats between the gateway and the services.

- Decoded pixels: body = raw HxWx3 uint8 RGB bytes (row-major), `content-type: application/x-imgsearch-rgb`,
  headers `x-image-height` and `x-image-width`. The gateway decodes an upload once and forwards pixels,
  so no service decodes (or re-encodes) a JPEG again.
- Vectors: JSON `"vectors_b64"` = base64 of little-endian float32 rows, with `"dim"`; the public JSON form
  (`"vectors": [[...]]`) is accepted too.
"""

from __future__ import annotations

import base64

import numpy as np

from imgcore.errors import ImageTooLarge, InvalidInput
from imgcore.image import DecodeLimits

RGB_CONTENT_TYPE = "application/x-imgsearch-rgb"
PixelBody = bytes | memoryview  # a raw RGB body as sent: a view of the decoded photo's own bytes
HEIGHT_HEADER = "x-image-height"
WIDTH_HEADER = "x-image-width"


def rgb_headers(image: np.ndarray) -> dict[str, str]:
    """Headers that describe `image` (HxWx3 uint8) sent as a raw RGB body."""
    height, width = image.shape[:2]
    return {"content-type": RGB_CONTENT_TYPE, HEIGHT_HEADER: str(height), WIDTH_HEADER: str(width)}


def rgb_body(image: np.ndarray) -> PixelBody:
    """The raw body for `image`: a flat read-only view of its bytes, no copy when it is already contiguous uint8
    (a 0.8 MB photo's `tobytes` took 0.3-0.5 ms of the gateway's decode stage, on every search's critical path)."""
    return np.ascontiguousarray(image, dtype=np.uint8).reshape(-1).data.toreadonly()


def rgb_from_body(
    body: bytes | bytearray | memoryview, height: str | None, width: str | None, limits: DecodeLimits
) -> np.ndarray:
    """Check the size headers against the body and the pixel limits; return an HxWx3 uint8 view."""
    try:
        h, w = int(height or ""), int(width or "")
    except ValueError as exc:
        raise InvalidInput(f"{HEIGHT_HEADER} and {WIDTH_HEADER} must be integers", reason="bad_rgb") from exc
    if h <= 0 or w <= 0:
        raise InvalidInput("image dimensions must be positive", reason="bad_rgb")
    if h * w > limits.max_pixels or max(h, w) > limits.max_side:
        raise ImageTooLarge(f"image is {w}x{h} pixels; the limit is {limits.max_pixels}", reason="too_many_pixels")
    if len(body) != h * w * 3:
        raise InvalidInput(f"body has {len(body)} bytes, expected {h}x{w}x3 = {h * w * 3}", reason="bad_rgb")
    return np.frombuffer(body, dtype=np.uint8).reshape(h, w, 3)


def vectors_to_b64(vectors: np.ndarray) -> str:
    """Base64 of the rows as little-endian float32."""
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode("ascii")


def vectors_from_b64(data: str, dim: int) -> np.ndarray:
    """Inverse of `vectors_to_b64`; refuses a length that is not a whole number of `dim` rows."""
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError as exc:
        raise InvalidInput("vectors_b64 is not valid base64", reason="bad_vectors") from exc
    if dim <= 0 or len(raw) % (4 * dim) != 0:
        raise InvalidInput(f"vectors_b64 holds {len(raw)} bytes: not rows of {dim} float32", reason="bad_vectors")
    return np.frombuffer(raw, dtype="<f4").reshape(-1, dim).astype(np.float32, copy=False)
