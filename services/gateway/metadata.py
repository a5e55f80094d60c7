"""An upload without its metadata, for the query log: a camera's EXIF carries GPS position, times and serial
numbers that a log of searches has no use for.

JPEG and PNG lose their metadata losslessly (the same compressed pixels, so a replay sees the same image):
JPEG keeps only the segments that decoding reads (JFIF, ICC profile, Adobe colour transform, tables, frame,
scans) plus a minimal EXIF holding the orientation alone; PNG drops its text, time and EXIF chunks. Anything
this cannot do losslessly (a PNG whose EXIF may turn it, a WebP with EXIF or XMP) returns None: the caller
re-encodes the decoded, upright pixels instead.
"""

from __future__ import annotations

import struct

from PIL import Image

from imgcore.png_header import SIGNATURE as PNG_SIGNATURE

_SOI, _SOS, _APP1, _COM = 0xD8, 0xDA, 0xE1, 0xFE
_KEPT_APPS = {0xE0, 0xE2, 0xEE}  # APP0 JFIF, APP2 ICC profile, APP14 Adobe (colour transform)
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn: no length
_PNG_DROPPED = {b"tEXt", b"zTXt", b"iTXt", b"tIME"}
_ORIENTATION = 0x0112


def without_metadata(data: bytes, fmt: str) -> bytes | None:
    """`data` without metadata, losslessly; None when that takes a re-encode."""
    if fmt == "JPEG":
        return _jpeg(data)
    if fmt == "PNG":
        return _png(data)
    if fmt == "WEBP":
        flags = data[20] if len(data) > 20 and data[12:16] == b"VP8X" else 0
        return None if flags & 0x0C else data  # EXIF (0x08) or XMP (0x04) present
    return None


def _exif_orientation(segment: bytes) -> int:
    exif = Image.Exif()
    try:
        exif.load(segment)
        return int(exif.get(_ORIENTATION, 1))
    except Exception:  # a broken EXIF: the decoder ignores it too
        return 1


def _orientation_segment(orientation: int) -> bytes:
    """APP1 with an EXIF of one entry, the orientation (big-endian TIFF, IFD0 at offset 8)."""
    entry = struct.pack(">HHIHH", _ORIENTATION, 3, 1, orientation, 0)
    body = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + entry + b"\x00\x00\x00\x00"
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def _jpeg(data: bytes) -> bytes | None:
    if data[:2] != b"\xff\xd8":
        return None
    kept: list[bytes] = []
    orientation, pos, end = 1, 2, len(data)
    while pos + 2 <= end and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            kept.append(data[pos : pos + 2])
            pos += 2
            continue
        if marker == _SOS:
            if orientation in range(2, 9):
                kept.insert(1 if kept and kept[0][1] == 0xE0 else 0, _orientation_segment(orientation))
            return b"\xff\xd8" + b"".join(kept) + data[pos:]
        if pos + 4 > end:
            return None
        stop = pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]
        if stop > end or stop < pos + 4:
            return None
        if marker == _APP1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            orientation = _exif_orientation(data[pos + 4 : stop])
        dropped = marker == _COM or (0xE0 <= marker <= 0xEF and marker not in _KEPT_APPS)
        if not dropped:
            kept.append(data[pos:stop])
        pos = stop
    return None


def _png(data: bytes) -> bytes | None:
    if not data.startswith(PNG_SIGNATURE):
        return None
    kept, pos, end = [PNG_SIGNATURE], len(PNG_SIGNATURE), len(data)
    while pos + 12 <= end:
        length = struct.unpack_from(">I", data, pos)[0]
        kind = data[pos + 4 : pos + 8]
        stop = pos + 12 + length
        if stop > end or kind == b"eXIf":  # an orientation may turn the image: re-encoded upright instead
            return None
        if kind not in _PNG_DROPPED:
            kept.append(data[pos:stop])
        pos = stop
        if kind == b"IEND":
            return b"".join(kept)
    return None
