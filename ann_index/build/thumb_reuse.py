"""A catalog image that is already a small, plain PNG or JPEG is its own thumbnail.

Re-encoding a 112 px product image the shop already serves costs the rebuild a JPEG encode per item (and
a generation of JPEG loss) for a thumbnail no better than the original. An image is reused only when a
browser shows it exactly as the rebuild decoded it and it carries nothing but pixels: at most
`MAX_SIDE` on each side, at most `MAX_BYTES`, and
- PNG: 8-bit grey, RGB or palette without transparency, chunks IHDR, PLTE, IDAT and IEND only (no text,
  time, EXIF or colour-profile chunks), nothing after IEND;
- JPEG: baseline, 8-bit, 1 or 3 components, one scan, segments APP0 (JFIF), DQT, DHT, DRI, SOF0/1 and
  SOS only (no EXIF, so no rotation; no XMP, ICC, Adobe or comments), no marker inside the scan but
  restart markers, ending with EOI.
Anything else is thumbnailed as before (ann_index.thumbs.make_thumbnail), metadata never reaches the
served thumbs.bin either way. The checks read headers only: a few microseconds per image.
"""

from __future__ import annotations

import re
import struct

from ann_index.thumbs import MAX_SIDE
from imgcore.png_header import GREY, PALETTE, RGB, SIGNATURE, png_header

MAX_BYTES = 48 * 1024  # larger sources are re-encoded: a 256 px q85 JPEG is 10-20 KB
_PNG_CHUNKS = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})
_PNG_COLOUR_TYPES = (GREY, RGB, PALETTE)  # not GREY_ALPHA or RGBA
_SOF = (0xC0, 0xC1)  # baseline and extended sequential Huffman
_JPEG_SEGMENTS = frozenset({0xE0, 0xDB, 0xC4, 0xDD, *_SOF})  # APP0 DQT DHT DRI SOF
_SOS, _EOI = 0xDA, b"\xff\xd9"
_ENTROPY_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")  # any marker but stuffing and RSTn


def reusable(data: bytes, max_side: int = MAX_SIDE) -> bool:
    """Whether `data` can be served as its own thumbnail (see the module's rules)."""
    if len(data) > MAX_BYTES:
        return False
    if data.startswith(SIGNATURE):
        return _plain_png(data, max_side)
    if data.startswith(b"\xff\xd8"):
        return _plain_jpeg(data, max_side)
    return False


def _plain_png(data: bytes, max_side: int) -> bool:
    header = png_header(data)
    if header is None or not header.exact or header.chunks - _PNG_CHUNKS:
        return False
    small = 0 < header.width <= max_side and 0 < header.height <= max_side
    return small and header.bit_depth == 8 and header.colour_type in _PNG_COLOUR_TYPES


def _plain_jpeg(data: bytes, max_side: int) -> bool:
    pos, sized = 2, False
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker == _SOS:
            scans = data[pos + 2 + length :]
            return sized and scans.endswith(_EOI) and _ENTROPY_MARKER.search(scans, 0, len(scans) - 2) is None
        if marker not in _JPEG_SEGMENTS or length < 2:
            return False
        if marker in _SOF:
            if length < 8 or pos + 10 > len(data):
                return False
            precision, height, width, components = struct.unpack_from(">BHHB", data, pos + 4)
            small = 0 < width <= max_side and 0 < height <= max_side
            if not (small and precision == 8 and components in (1, 3)):
                return False
            sized = True
        pos += 2 + length
    return False
