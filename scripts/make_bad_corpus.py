"""Build the bad-input corpus in tests/data/bad/: files every image-taking endpoint must survive.

`invalid/` holds inputs that must be refused with a 4xx; `valid/` holds odd but legal images that
must be accepted. `corpus.json` lists every file with the status class and reason expected.
Deterministic: running it twice gives the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

Maker = Callable[[], bytes]


def _photo(w: int = 96, h: int = 64) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), np.full_like(xx, 128)], axis=2)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _huge_header_png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))


def _png_bomb() -> bytes:
    # 1-bit 20000x20000: 400 M pixels from ~50 kB; a decoder without a pixel limit would allocate GBs.
    side = 20_000
    row = b"\0" + b"\0" * (side // 8)
    raw = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b"")


def _jpeg_with_size(width: int, height: int) -> bytes:
    """The small JPEG with the size in its SOF0 header replaced: a header that lies about its dimensions."""
    at = JPEG.index(b"\xff\xc0") + 5  # marker, segment length, sample precision
    return JPEG[:at] + struct.pack(">HH", height, width) + JPEG[at + 4 :]


def _gif_with_screen(width: int, height: int) -> bytes:
    """A tiny GIF whose logical screen claims `width` x `height` (a GIF decompression bomb's header)."""
    gif = _save(_photo(8, 8).convert("P"), "GIF")
    return gif[:6] + struct.pack("<HH", width, height) + gif[10:]


def _exif_rotated() -> bytes:
    img = _photo(96, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW on display
    return _save(img, "JPEG", quality=90, exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [_photo().convert("P"), Image.new("P", (96, 64), 3)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _grey16() -> bytes:
    arr = (np.arange(64 * 96, dtype=np.uint32).reshape(64, 96) * 10).astype(np.uint16)
    return _save(Image.fromarray(arr), "PNG")


def _rgba() -> bytes:
    img = _photo().convert("RGBA")
    img.putalpha(128)
    return _save(img, "PNG")


JPEG = _save(_photo(), "JPEG", quality=90)

INVALID: dict[str, tuple[Maker, str]] = {
    "zero_bytes.jpg": (lambda: b"", "empty"),
    "truncated.jpg": (lambda: JPEG[: len(JPEG) // 2], "corrupt"),
    "header_only.jpg": (lambda: JPEG[:20], "not_an_image"),
    "text.txt": (lambda: b"hello, this is not an image\n" * 10, "not_an_image"),
    "page.html": (lambda: b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", "not_an_image"),
    "drawing.svg": (
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
        "not_an_image",
    ),
    "doc.pdf": (lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "not_an_image"),
    "random.bin": (lambda: np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not_an_image"),
    "bomb.png": (_png_bomb, "too_many_pixels"),
    "huge_header.png": (_huge_header_png, "too_many_pixels"),
    "jpeg_magic_then_junk.jpg": (lambda: b"\xff\xd8\xff\xe0" + b"\x00" * 200, "not_an_image"),
    "huge_sof.jpg": (lambda: _jpeg_with_size(60_000, 60_000), "too_many_pixels"),
    "huge_screen.gif": (lambda: _gif_with_screen(65_535, 65_535), "too_many_pixels"),
    "zero_size.jpg": (lambda: _jpeg_with_size(0, 0), "not_an_image"),
    "icon.ico": (lambda: _save(_photo(32, 32), "ICO"), "unsupported_format"),
    "truncated.webp": (lambda: _save(_photo(), "WEBP", quality=80)[:150], "corrupt"),
    "compressed.gz": (lambda: gzip.compress(JPEG, mtime=0), "not_an_image"),
}

VALID: dict[str, Maker] = {
    "cmyk.jpg": lambda: _save(_photo().convert("CMYK"), "JPEG", quality=90),
    "grey16.png": _grey16,
    "palette.png": lambda: _save(_photo().convert("P"), "PNG"),
    "rgba.png": _rgba,
    "grey.png": lambda: _save(_photo().convert("L"), "PNG"),
    "one_pixel.png": lambda: _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
    "wide_4000x40.png": lambda: _save(_photo(4000, 40), "PNG"),
    "animated.gif": _animated_gif,
    "photo.webp": lambda: _save(_photo(), "WEBP", quality=80),
    "photo.bmp": lambda: _save(_photo(), "BMP"),
    "photo.tiff": lambda: _save(_photo(), "TIFF"),
    "exif_rotated.jpg": _exif_rotated,
    "trailing_garbage.jpg": lambda: JPEG + b"GARBAGE" * 50,
    "progressive.jpg": lambda: _save(_photo(), "JPEG", quality=85, progressive=True),
    "grey_alpha.png": lambda: _save(_photo().convert("LA"), "PNG"),
    "bilevel.png": lambda: _save(_photo().convert("1"), "PNG"),
    "tall_40x4000.png": lambda: _save(_photo(40, 4000), "PNG"),
}


def build(out: Path) -> dict[str, dict[str, str]]:
    corpus: dict[str, dict[str, str]] = {}
    for sub in ("invalid", "valid"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for name, (make, reason) in INVALID.items():
        (out / "invalid" / name).write_bytes(make())
        corpus[f"invalid/{name}"] = {"expect": "4xx", "reason": reason}
    for name, make_valid in VALID.items():
        (out / "valid" / name).write_bytes(make_valid())
        corpus[f"valid/{name}"] = {"expect": "200"}
    (out / "corpus.json").write_text(json.dumps(corpus, indent=2, sort_keys=True) + "\n")
    return corpus


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "tests/data/bad"
    print(f"{len(build(target))} files written to {target}")
