"""Which catalog images are their own thumbnails (ann_index.build.thumb_reuse): small, plain, nothing but pixels."""

from __future__ import annotations

import io
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from ann_index.build.thumb_reuse import MAX_BYTES, reusable
from ann_index.thumbs import MAX_SIDE

RNG = np.random.default_rng(3)
PHOTO = Image.fromarray(RNG.integers(0, 255, (90, 120, 3), dtype=np.uint8))


def _encoded(image: Image.Image, fmt: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        _encoded(PHOTO, "JPEG"),
        _encoded(PHOTO.convert("L"), "JPEG"),
        cv2.imencode(".jpg", np.zeros((50, 60, 3), np.uint8))[1].tobytes(),  # what make_thumbnail writes
        _encoded(PHOTO, "PNG"),
        _encoded(PHOTO.convert("L"), "PNG"),
        _encoded(PHOTO.convert("P"), "PNG"),
        _encoded(PHOTO.resize((MAX_SIDE, 10)), "PNG"),
    ],
    ids=["jpeg", "grey-jpeg", "cv2-jpeg", "png", "grey-png", "palette-png", "max-side-png"],
)
def test_small_plain_images_are_reused(data: bytes) -> None:
    assert reusable(data)


def _png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "someone")
    return _encoded(PHOTO, "PNG", pnginfo=info)


def _jpeg_with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: a browser would turn it, the index would not
    return _encoded(PHOTO, "JPEG", exif=exif)


@pytest.mark.parametrize(
    "data",
    [
        _encoded(PHOTO.resize((MAX_SIDE + 1, 10)), "PNG"),  # too wide
        _encoded(PHOTO.resize((10, MAX_SIDE + 1)), "JPEG"),  # too tall
        _encoded(PHOTO.convert("RGBA"), "PNG"),  # alpha: the index composites on white
        _encoded(PHOTO.convert("P"), "PNG", transparency=0),  # tRNS
        _encoded(PHOTO.convert("I;16"), "PNG"),  # 16-bit
        _png_with_text(),
        _encoded(PHOTO, "PNG") + b"trailing",
        _encoded(PHOTO, "JPEG", progressive=True),
        _jpeg_with_exif(),
        _encoded(PHOTO, "JPEG", comment=b"a note"),
        _encoded(PHOTO.convert("CMYK"), "JPEG"),
        _encoded(PHOTO, "JPEG")[:-200],  # truncated
        _encoded(PHOTO, "WEBP"),
        _encoded(PHOTO, "GIF"),
        b"",
    ],
    ids=[
        "wide",
        "tall",
        "rgba",
        "trns",
        "16-bit",
        "text-chunk",
        "trailing-bytes",
        "progressive",
        "exif",
        "comment",
        "cmyk",
        "truncated",
        "webp",
        "gif",
        "empty",
    ],
)
def test_anything_else_is_reencoded(data: bytes) -> None:
    assert not reusable(data)


def test_a_large_file_is_reencoded_even_when_small_in_pixels() -> None:
    noisy = Image.fromarray(RNG.integers(0, 255, (MAX_SIDE, MAX_SIDE, 3), dtype=np.uint8))
    data = _encoded(noisy, "PNG")
    assert len(data) > MAX_BYTES and not reusable(data)
