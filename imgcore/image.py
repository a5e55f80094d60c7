"""The one image decoder: bytes in, RGB uint8 array out, with limits, a known peak memory and typed errors.

Memory: the header is read first (size, mode, format), so a decode's peak is known before any pixel is
decoded (`plan_decode(...).peak_bytes`). The pixels then exist once in their stored mode (PIL's buffer)
plus once as the RGB result; conversions run a strip at a time (imgcore.pixels). When the caller needs at
most `max_side` pixels, JPEGs are decoded at 1/2, 1/4 or 1/8 scale (DCT scaling) and other formats are
reduced by a whole factor strip by strip, both never below the final size, which is then reached with the
same INTER_AREA resize as before: photos up to twice `max_side` give exactly the pixels they always did.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from imgcore.decode_plan import DecodePlan, plan_for, plan_of
from imgcore.errors import ImageTooLarge, InvalidImage
from imgcore.fast_decode import decode_fast, decode_png_fast, fast_decodable, plain_png
from imgcore.pixels import (
    GREY_16,
    fit_scale,
    fitted_size,
    grey_scale,
    reduce_rgb,
    resize_to,
    source_view,
    strip_rgb,
    strip_rows,
    upright_shape,
)
from imgcore.png_header import GREY

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"})
# PIL allocates large images in blocks (16 MiB by default). glibc serves blocks under 32 MiB from a
# thread's malloc arena once one has been freed, and arenas keep what they had: each decoding thread
# would hold on to its last image (measured: +60 MiB RSS per thread). Blocks over 32 MiB are always mapped
# fresh and given back on free.
Image.core.set_block_size(64 * 1024 * 1024)


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 20_000


@dataclass(frozen=True)
class Decoded:
    """A decoded image: `pixels` (HxWx3 uint8 RGB, upright) at most `max_side` wide and high; `width` and
    `height` of the full upright image; `scale` = pixels per original pixel."""

    pixels: np.ndarray
    width: int
    height: int
    scale: float


def decode_image(data: bytes, limits: DecodeLimits | None = None) -> np.ndarray:
    """Decode to an HxWx3 uint8 RGB array at full size, EXIF orientation applied.

    Transparent images are composited on white because catalog items are shown on white.
    """
    return decode(data, limits).pixels


def fit(image: np.ndarray, max_side: int = 0) -> Decoded:
    """Already-decoded pixels shrunk as `decode` shrinks them (at most `max_side` wide and high)."""
    height, width = image.shape[:2]
    fitted = resize_to(image, fitted_size(width, height, max_side))
    return Decoded(fitted, width, height, fit_scale(width, height, max_side))


def plan_decode(data: bytes, limits: DecodeLimits | None = None, max_side: int = 0) -> DecodePlan:
    """Read the header only: the typed error an upload will get, or what decoding it costs."""
    lim = limits or DecodeLimits()
    with _typed_errors():
        size = webp_size(data)
        if size is not None:  # PIL's WebP decoder allocates its canvases on open: read the size by hand
            _check_bytes(data, lim)
            _check_pixels(*size, lim)
            return plan_for("WEBP", "RGBA", size, max_side)
        with _opened(data, lim) as img:
            return plan_of(img, max_side)


def decode(data: bytes, limits: DecodeLimits | None = None, max_side: int = 0) -> Decoded:
    """Decode within `plan_decode(data, limits, max_side).peak_bytes`; `max_side` 0: full size."""
    lim = limits or DecodeLimits()
    plain = _decode_plain_png(data, lim, max_side)
    if plain is not None:
        return plain
    with _typed_errors(), _opened(data, lim) as img:
        img.seek(0)  # first frame of animations (before DCT scaling: an MPO's seek resets its tile)
        plan = plan_of(img, max_side)
        if plan.reduce == 1 and fast_decodable(img, data):
            pixels = decode_fast(img, data, plan.draft_scale)
            if pixels is not None:  # upright as stored, DCT-scaled as PIL's draft would
                return _sized(pixels, plan, 1)
        if plan.draft_scale > 1:
            img.draft(None, (plan.width // plan.draft_scale, plan.height // plan.draft_scale))
        img.load()
        orientation = int(img.getexif().get(ExifTags.Base.Orientation, 1))
        return _sized(_to_rgb(img, plan.reduce, orientation), plan, orientation)


def _sized(pixels: np.ndarray, plan: DecodePlan, orientation: int) -> Decoded:
    """Upright `pixels` at the plan's result size (shrunk with INTER_AREA where they are larger)."""
    height, width = upright_shape(plan.width, plan.height, orientation)
    out_h, out_w = upright_shape(plan.out_width or plan.width, plan.out_height or plan.height, orientation)
    scale = 1.0 if (out_w, out_h) == (width, height) else max(out_w, out_h) / max(width, height)
    return Decoded(resize_to(pixels, (out_w, out_h)), width, height, scale)


def _decode_plain_png(data: bytes, lim: DecodeLimits, max_side: int) -> Decoded | None:
    """A plain 8-bit PNG (imgcore.fast_decode.plain_png) at full size, its header read without PIL; None:
    the general path decides (and raises the typed error if the file is broken)."""
    header = plain_png(data)
    if header is None:
        return None
    _check_bytes(data, lim)
    _check_pixels(header.width, header.height, lim)
    mode = "L" if header.colour_type == GREY else "RGB"
    if plan_for("PNG", mode, (header.width, header.height), max_side).reduce != 1:
        return None  # reduced strip by strip by the general path, within its memory plan
    pixels = decode_png_fast(data, header)
    return None if pixels is None else fit(pixels, max_side)


@contextlib.contextmanager
def _opened(data: bytes, lim: DecodeLimits) -> Iterator[Image.Image]:
    """The image with its header read and checked against the limits; no pixel decoded yet."""
    _check_bytes(data, lim)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            if fmt not in ALLOWED_FORMATS:
                raise InvalidImage(f"unsupported image format {fmt or 'unknown'}", reason="unsupported_format")
            _check_pixels(*img.size, lim)
            yield img


def _check_bytes(data: bytes, lim: DecodeLimits) -> None:
    if len(data) == 0:
        raise InvalidImage("empty upload", reason="empty")
    if len(data) > lim.max_bytes:
        raise ImageTooLarge(f"image has {len(data)} bytes; the limit is {lim.max_bytes}", reason="too_many_bytes")


def _check_pixels(w: int, h: int, lim: DecodeLimits) -> None:
    if w <= 0 or h <= 0:
        raise InvalidImage("image has no pixels", reason="corrupt")
    if w * h > lim.max_pixels or max(w, h) > lim.max_side:
        raise ImageTooLarge(f"image is {w}x{h} pixels; the limit is {lim.max_pixels} pixels", reason="too_many_pixels")


def webp_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a WebP file's first chunk header; None if `data` is no WebP (or a broken one)."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


@contextlib.contextmanager
def _typed_errors() -> Iterator[None]:
    """Every failure of a decoder as InvalidImage or ImageTooLarge (the caller sees a 4xx, never a 500)."""
    try:
        yield
    except (ImageTooLarge, InvalidImage):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image is too large to decode: {exc}", reason="too_many_pixels") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage("data is not a recognised image", reason="not_an_image") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, MemoryError) as exc:
        raise InvalidImage(f"image is corrupt or truncated: {exc}", reason="corrupt") from exc


def _to_rgb(img: Image.Image, factor: int, orientation: int) -> np.ndarray:
    """`img` as upright RGB uint8, reduced by `factor`, built one strip of stored rows at a time."""
    w, h = img.size
    rw, rh = math.ceil(w / factor), math.ceil(h / factor)
    out = np.empty((*upright_shape(rw, rh, orientation), 3), dtype=np.uint8)
    stored = source_view(out, orientation)  # shape (rh, rw, 3): rows written here land upright in `out`
    grey = grey_scale(img) if img.mode in GREY_16 or img.mode == "F" else None
    rows = strip_rows(w, factor)
    for top in range(0, h, rows):
        piece = img.crop((0, top, w, min(h, top + rows)))
        reduced = reduce_rgb(strip_rgb(piece, grey), factor)
        stored[top // factor : top // factor + reduced.shape[0]] = reduced
    return out
