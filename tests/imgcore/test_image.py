"""The shared decoder against the bad-input corpus and odd-but-valid images."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from imgcore.errors import ImageTooLarge, ImgSearchError, InvalidImage
from imgcore.image import DecodeLimits, decode_image
from tests.helpers.paths import DATA

CORPUS = DATA / "bad"
ENTRIES = json.loads((CORPUS / "corpus.json").read_text())


def test_corpus_has_at_least_15_kinds_of_each_outcome_in_total() -> None:
    assert len(ENTRIES) >= 15
    assert {e["expect"] for e in ENTRIES.values()} == {"4xx", "200"}


@pytest.mark.parametrize("name", sorted(k for k, v in ENTRIES.items() if v["expect"] == "4xx"))
def test_invalid_input_raises_typed_4xx_error_with_reason(name: str) -> None:
    with pytest.raises(ImgSearchError) as info:
        decode_image((CORPUS / name).read_bytes())
    assert 400 <= info.value.status < 500
    assert info.value.reason == ENTRIES[name]["reason"]


@pytest.mark.parametrize("name", sorted(k for k, v in ENTRIES.items() if v["expect"] == "200"))
def test_odd_but_valid_image_decodes_to_rgb_uint8(name: str) -> None:
    arr = decode_image((CORPUS / name).read_bytes())
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert arr.flags["C_CONTIGUOUS"]


def test_exif_orientation_is_applied() -> None:
    arr = decode_image((CORPUS / "valid" / "exif_rotated.jpg").read_bytes())
    assert arr.shape[:2] == (96, 64)  # stored 96 wide x 64 high, displayed rotated


def test_transparent_pixels_become_white() -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert (decode_image(buf.getvalue()) == 255).all()


def test_16_bit_grey_keeps_its_range() -> None:
    arr = decode_image((CORPUS / "valid" / "grey16.png").read_bytes())
    assert arr.min() == 0 and arr.max() > 200


def test_byte_limit_is_checked_before_decoding() -> None:
    data = (CORPUS / "valid" / "photo.bmp").read_bytes()
    with pytest.raises(ImageTooLarge) as info:
        decode_image(data, DecodeLimits(max_bytes=len(data) - 1))
    assert info.value.status == 413


def test_pixel_limit_refuses_large_valid_image() -> None:
    data = (CORPUS / "valid" / "wide_4000x40.png").read_bytes()
    with pytest.raises(ImageTooLarge):
        decode_image(data, DecodeLimits(max_pixels=100_000))


def test_svg_is_not_rendered() -> None:
    with pytest.raises(InvalidImage):
        decode_image((CORPUS / "invalid" / "drawing.svg").read_bytes())
