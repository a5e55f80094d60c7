"""OpenCV's decoder for the images where it gives exactly PIL's pixels, faster and without the GIL.

For 8-bit PNGs (grey or RGB, no transparency) and JPEGs (grey or YCbCr) that need no EXIF rotation and no
reduced-size decode, `cv2.imdecode` produces the same pixels as the PIL path of `imgcore.image.decode`
(the same zlib and libjpeg-turbo algorithms; tests/imgcore/test_fast_decode.py compares them on every test
photo), in 60-80 % of the time and with the GIL released, so decode threads stop queueing behind each other
(docs/benchmarks.md, P4). Everything else — palettes, alpha, 16-bit, CMYK, EXIF rotation, DCT scaling,
other formats — and anything OpenCV refuses goes through PIL as before, which also gives the typed error.

PIL has already read the header when this runs (the size limits are checked on it), so this never sees an
image the limits refuse. The output exists once: the colour order is swapped in place.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import ExifTags, Image

_EOI = b"\xff\xd9"
_PNG_BIT_DEPTH = 24  # offset of the bit depth in a PNG: signature (8), IHDR length and type (8), size (8)


def fast_decodable(img: Image.Image, data: bytes) -> bool:
    """Whether OpenCV decodes this opened (not yet loaded) image to PIL's pixels, upright as stored.
    Reduced-size (DCT-scaled) decoding is the caller's to rule out."""
    if getattr(img, "is_animated", False):
        return False
    if img.format == "PNG":
        # 8 bits per sample only (PIL and libpng widen 1/2/4-bit grey differently); PIL reads a PNG's EXIF
        # only by decoding it, so any eXIf chunk (a possible rotation) goes to PIL.
        plain = img.mode in ("L", "RGB") and "transparency" not in img.info and data[_PNG_BIT_DEPTH] == 8
        return plain and b"eXIf" not in data
    if img.format == "JPEG":
        # libjpeg-turbo pads a truncated JPEG with grey and only warns, where PIL raises: a file that does
        # not end with its end-of-image marker (a truncated one, or one with trailing bytes) goes to PIL.
        upright = int(img.getexif().get(ExifTags.Base.Orientation, 1)) == 1
        return img.mode in ("L", "RGB") and data.endswith(_EOI) and upright
    return False


def decode_fast(img: Image.Image, data: bytes) -> np.ndarray | None:
    """HxWx3 uint8 RGB of a `fast_decodable` image as stored (no rotation), or None where OpenCV fails or
    disagrees with the header (PIL then decodes it and raises the typed error if it is broken)."""
    grey = img.mode == "L"
    # `fast_decodable` admits 8-bit images only, so these two modes give PIL's samples: grey, or 3 channels BGR.
    flags = cv2.IMREAD_IGNORE_ORIENTATION | (cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    width, height = img.size
    if pixels is None or pixels.dtype != np.uint8 or pixels.shape[:2] != (height, width):
        return None
    if grey:
        return np.asarray(cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB))
    return np.asarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels))
