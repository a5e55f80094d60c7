"""What decoding an image will cost, from its header alone: scaling and peak memory (imgcore.image).

The decoder plans before it decodes, so an upload's peak memory is known (and budgeted) before any pixel
exists; bench/decode_memory.py measures the real peaks these estimates must cover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from imgcore.pixels import STRIP_BYTES, fitted_size

# Bytes per pixel of PIL's buffer by mode (3-channel modes are stored 4 bytes wide); others: 4.
_PIL_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}
# Bytes per pixel a codec holds besides PIL's buffer: PIL's WebP reader keeps libwebp's two RGBA canvases
# and a copy of the frame.
_CODEC_BUFFER_BYTES = {"WEBP": 12}
# Measured peaks (bench/decode_memory.py) exceed the sum of the buffers above by up to ~4 MiB.
_SLACK_BYTES = 8 * 1024 * 1024
# A JPEG whose DCT scaling lands at most this far below max_side is decoded at that scale and not resized: a
# 4032 px phone photo at 1/2 is 2016 px, where a full decode and a resize to 2048 took 62 ms against 18-30.
DRAFT_SLACK = 0.05


@dataclass(frozen=True)
class DecodePlan:
    """What the header says, and what decoding it will cost."""

    format: str
    mode: str
    width: int  # as stored (before EXIF orientation)
    height: int
    draft_scale: int  # JPEG DCT scaling: 1, 2, 4 or 8
    reduce: int  # whole-factor reduction after decoding
    peak_bytes: int  # most memory the decode holds at once, beyond the encoded bytes
    out_width: int = 0  # the result's size as stored (0: width, height); at most max_side, see DRAFT_SLACK
    out_height: int = 0


def plan_of(img: Image.Image, max_side: int) -> DecodePlan:
    """The plan for an opened image (JPEGs may be DCT-scaled; progressive ones keep their coefficients)."""
    draftable = img.format in ("JPEG", "MPO") and len(getattr(img, "tile", ())) == 1
    codec = _jpeg_coefficient_bytes(img) + _tiff_block_bytes(img)
    return plan_for(img.format or "", img.mode, img.size, max_side, draftable, codec)


def plan_for(
    fmt: str, mode: str, size: tuple[int, int], max_side: int, draftable: bool = False, codec_bytes: int = 0
) -> DecodePlan:
    """Scaling and peak memory of decoding an image for a result at most `max_side` wide and high.

    The peak is the largest of three moments: decoding (PIL's buffer + the codec's own), converting
    (PIL's buffer + the reduced RGB result + one strip's temporaries) and the final resize.
    """
    w, h = size
    target_w, target_h = fitted_size(w, h, max_side)
    draft = 1
    if draftable:
        least_w, least_h = target_w * (1.0 - DRAFT_SLACK), target_h * (1.0 - DRAFT_SLACK)
        draft = next(s for s in (8, 4, 2, 1) if math.ceil(w / s) >= least_w and math.ceil(h / s) >= least_h)
    dw, dh = math.ceil(w / draft), math.ceil(h / draft)
    if dw < target_w or dh < target_h:  # DCT-scaled to just under max_side: kept as it comes, never enlarged
        target_w, target_h = dw, dh
    factor = max(1, min(dw // target_w, dh // target_h))
    stored = dw * dh * _PIL_PIXEL_BYTES.get(mode, 4)
    codec = w * h * _CODEC_BUFFER_BYTES.get(fmt, 0) + codec_bytes
    reduced = math.ceil(dw / factor) * math.ceil(dh / factor) * 3
    resized = target_w * target_h * 3 if (target_w, target_h) != (w, h) else 0
    peak = stored + max(codec, reduced + STRIP_BYTES) + resized + _SLACK_BYTES
    return DecodePlan(fmt, mode, w, h, draft, factor, peak, target_w, target_h)


def _jpeg_coefficient_bytes(img: Image.Image) -> int:
    """A progressive JPEG keeps every DCT coefficient (2 bytes each, at full size) until its last scan."""
    if img.format not in ("JPEG", "MPO") or not img.info.get("progressive"):
        return 0
    layers = getattr(img, "layer", None) or [("", 1, 1, 0)] * 3
    h_max = max(int(layer[1]) for layer in layers)
    v_max = max(int(layer[2]) for layer in layers)
    w, h = img.size
    return sum(w * h * int(layer[1]) * int(layer[2]) * 2 // (h_max * v_max) for layer in layers)


def _tiff_block_bytes(img: Image.Image) -> int:
    """libtiff decodes one strip or tile at a time into a buffer of its own (at least RGBA-wide)."""
    tags = getattr(img, "tag_v2", None)
    if img.format != "TIFF" or tags is None:
        return 0
    w, h = img.size
    bits = tags.get(258, (8,))
    sample_bytes = sum(bits) // 8 if isinstance(bits, tuple) else int(bits) * int(tags.get(277, 1)) // 8
    if tags.get(322) and tags.get(323):
        block = int(tags[322]) * int(tags[323])
    else:
        block = w * min(h, int(tags.get(278, h)))
    return block * max(4, sample_bytes)


# A JPEG's tables and markers before its first scan, or a PNG's chunks before its first IDAT, number a few
# dozen; PIL reads each in Python (~5 us), so 60,000 empty ones cost 0.3 s before any pixel.
SHORT_HEADER_PARTS = 64


def short_header(data: bytes, max_parts: int = SHORT_HEADER_PARTS) -> bool:
    """Whether PIL reaches the pixels of this JPEG or PNG within `max_parts` segments or chunks (a WebP's size
    is read by hand: always). Other formats, or longer headers, are not known to be quick to read."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    if data[:2] == b"\xff\xd8":
        return _jpeg_parts_before_scan(data, max_parts)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        pos = 8
        for _ in range(max_parts):
            if data[pos + 4 : pos + 8] == b"IDAT":
                return True
            pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
            if pos + 8 > len(data):
                return False
    return False


def _jpeg_parts_before_scan(data: bytes, max_parts: int) -> bool:
    pos, end = 2, len(data)
    for _ in range(max_parts):
        if pos + 4 > end or data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xDA:
            return True
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # fill byte, TEM, RSTn: no length
            pos += 1 if marker == 0xFF else 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return False
