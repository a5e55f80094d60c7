"""The one image decoder: bytes in, RGB uint8 array out, with limits and typed errors."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgcore.errors import ImageTooLarge, InvalidImage

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"})


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 20_000


def decode_image(data: bytes, limits: DecodeLimits | None = None) -> np.ndarray:
    """Decode to an HxWx3 uint8 RGB array with EXIF orientation applied.

    Dimensions are checked from the header before any pixel is decoded, so a decompression
    bomb costs nothing. Transparent images are composited on white because catalog items
    are shown on white.
    """
    lim = limits or DecodeLimits()
    if len(data) == 0:
        raise InvalidImage("empty upload", reason="empty")
    if len(data) > lim.max_bytes:
        raise ImageTooLarge(f"image has {len(data)} bytes; the limit is {lim.max_bytes}", reason="too_many_bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or ""
            if fmt not in ALLOWED_FORMATS:
                raise InvalidImage(f"unsupported image format {fmt or 'unknown'}", reason="unsupported_format")
            w, h = img.size
            if w <= 0 or h <= 0:
                raise InvalidImage("image has no pixels", reason="corrupt")
            if w * h > lim.max_pixels or max(w, h) > lim.max_side:
                raise ImageTooLarge(
                    f"image is {w}x{h} pixels; the limit is {lim.max_pixels} pixels", reason="too_many_pixels"
                )
            img.seek(0)  # first frame of animations
            img.load()
            upright: Image.Image = ImageOps.exif_transpose(img) or img
            return _to_rgb(upright)
    except (ImageTooLarge, InvalidImage):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image is too large to decode: {exc}", reason="too_many_pixels") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage("data is not a recognised image", reason="not_an_image") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, MemoryError) as exc:
        raise InvalidImage(f"image is corrupt or truncated: {exc}", reason="corrupt") from exc


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = float(arr.max()) or 1.0
        scale = 255.0 / (65535.0 if peak > 255 else max(peak, 255.0))
        grey = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        grey = ((arr - lo) / ((hi - lo) or 1.0) * 255.0).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    out = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(out)
