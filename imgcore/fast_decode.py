"""OpenCV's decoder for the images where it gives exactly PIL's pixels, faster and without the GIL.

For 8-bit PNGs (grey or RGB, no transparency) and JPEGs (grey or YCbCr) that need no EXIF rotation and no
reduced-size decode, `cv2.imdecode` produces the same pixels as the PIL path of `imgcore.image.decode`
(the same zlib and libjpeg-turbo algorithms; tests/imgcore/test_fast_decode.py compares them on every test
photo), in 60-80 % of the time and with the GIL released, so decode threads stop queueing behind each other
(docs/benchmarks.md, P4). Everything else — palettes, alpha, 16-bit, CMYK, EXIF rotation, DCT scaling,
other formats — and anything OpenCV refuses goes through PIL as before, which also gives the typed error.

A plain PNG's header is read without PIL (imgcore.png_header: PIL's open cost up to a third of the decode
of a small catalog image); a JPEG's by PIL. Either way the size limits are checked on the header before
this runs, so it never sees an image the limits refuse. The output exists once: the colour order is
swapped in place.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import ExifTags, Image

from imgcore.png_header import GREY, RGB, PngHeader, png_header

_EOI = b"\xff\xd9"
_PNG_NOT_PLAIN = frozenset({b"tRNS", b"eXIf", b"acTL"})  # transparency, a possible rotation, animation


def plain_png(data: bytes) -> PngHeader | None:
    """The header of a PNG that OpenCV decodes to PIL's pixels (8-bit grey or RGB, no transparency, no
    animation, no EXIF: PIL reads a PNG's rotation only by decoding it), read without PIL; else None."""
    header = png_header(data)
    if header is None or header.bit_depth != 8 or header.colour_type not in (GREY, RGB):
        return None
    return None if header.chunks & _PNG_NOT_PLAIN else header


def fast_decodable(img: Image.Image, data: bytes) -> bool:
    """Whether OpenCV decodes this opened (not yet loaded) JPEG to PIL's pixels, upright as stored (plain
    PNGs take `decode_png_fast` before PIL opens them). Reduced-size (DCT-scaled) decoding is the caller's
    to rule out."""
    if img.format != "JPEG" or getattr(img, "is_animated", False):
        return False
    # libjpeg-turbo pads a truncated JPEG with grey and only warns, where PIL raises: a file that does
    # not end with its end-of-image marker (a truncated one, or one with trailing bytes) goes to PIL.
    upright = int(img.getexif().get(ExifTags.Base.Orientation, 1)) == 1
    return img.mode in ("L", "RGB") and data.endswith(_EOI) and upright


def decode_fast(img: Image.Image, data: bytes, scale: int = 1) -> np.ndarray | None:
    """HxWx3 uint8 RGB of a `fast_decodable` image as stored (no rotation), DCT-scaled to 1/`scale` (1, 2, 4, 8:
    libjpeg-turbo's scaled decode, PIL's `draft` pixels), or None where OpenCV fails or disagrees with the header
    (PIL then decodes it and raises the typed error if it is broken)."""
    width, height = img.size
    return _imdecode(data, img.mode == "L", -(-width // scale), -(-height // scale), scale)


def decode_png_fast(data: bytes, header: PngHeader) -> np.ndarray | None:
    """HxWx3 uint8 RGB of a `plain_png`, or None where OpenCV fails or disagrees with the header."""
    return _imdecode(data, header.colour_type == GREY, header.width, header.height)


# OpenCV's read modes by DCT scale: (colour, grey).
_MODES = {
    1: (cv2.IMREAD_COLOR, cv2.IMREAD_GRAYSCALE),
    2: (cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
    4: (cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    8: (cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
}


def _imdecode(data: bytes, grey: bool, width: int, height: int, scale: int = 1) -> np.ndarray | None:
    # Only 8-bit images come here, so these two modes give PIL's samples: grey, or 3 channels BGR.
    flags = cv2.IMREAD_IGNORE_ORIENTATION | _MODES[scale][grey]
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:  # a plain PNG's path runs before PIL's typed errors: PIL decides (and names the error)
        return None
    if pixels is None or pixels.dtype != np.uint8 or pixels.shape[:2] != (height, width):
        return None
    if grey:
        return np.asarray(cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB))
    return np.asarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels))
