"""The shared decoder against the bad-input corpus and odd-but-valid images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from imgcore.errors import ImageTooLarge, ImgSearchError, InvalidImage
from imgcore.image import DecodeLimits, decode, decode_image, plan_decode, webp_size
from imgcore.pixels import STRIP_PIXELS
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


# --- Bounded memory: strips, early reduction, planned peaks (issue 13, finding 1) ---

PHOTOS = sorted((DATA / "photos").glob("*.jpg"))


def _png(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **params)  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_photo_shrunk_to_at_most_twice_max_side_gets_exactly_the_gateways_old_pixels(photo: Path) -> None:
    data = photo.read_bytes()
    full = decode_image(data)
    max_side = max(full.shape[:2]) * 2 // 3  # less than twice: no DCT scaling, no whole-factor reduction
    decoded = decode(data, max_side=max_side)
    old_h, old_w = full.shape[:2]
    scale = max_side / max(old_h, old_w)
    expected = cv2.resize(full, (round(old_w * scale), round(old_h * scale)), interpolation=cv2.INTER_AREA)
    assert (decoded.width, decoded.height, decoded.scale) == (old_w, old_h, scale)
    assert np.array_equal(decoded.pixels, expected)


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_photo_reduced_early_has_the_same_size_and_nearly_the_same_pixels(photo: Path) -> None:
    data = photo.read_bytes()
    full = decode_image(data)
    max_side = max(full.shape[:2]) // 3  # JPEG decoded at 1/2 scale first
    assert plan_decode(data, max_side=max_side).draft_scale == 2
    decoded = decode(data, max_side=max_side)
    expected = decode(data, max_side=0).pixels
    h, w = expected.shape[:2]
    size = (round(w * decoded.scale), round(h * decoded.scale))
    expected = cv2.resize(expected, size, interpolation=cv2.INTER_AREA)
    assert decoded.pixels.shape == expected.shape
    assert np.abs(decoded.pixels.astype(int) - expected).mean() < 2.0


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("max_side", [0, 6])
def test_every_exif_orientation_matches_pil_exif_transpose(orientation: int, max_side: int) -> None:
    stored = np.random.default_rng(orientation).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = orientation
    data = _png(img, exif=exif.tobytes())
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    decoded = decode(data, max_side=max_side)
    assert (decoded.height, decoded.width) == upright.shape[:2]
    if max_side == 0:
        assert np.array_equal(decoded.pixels, upright)
    else:  # reduced by 2 in the stored layout, then turned: the same as turning first, up to rounding
        h, w = upright.shape[:2]
        expected = cv2.resize(
            upright, (round(w * decoded.scale), round(h * decoded.scale)), interpolation=cv2.INTER_AREA
        )
        assert decoded.pixels.shape == expected.shape
        assert np.abs(decoded.pixels.astype(int) - expected).max() <= 64


def test_16_bit_grey_scales_as_before_without_a_float_copy_of_the_image() -> None:
    values = np.arange(0, 65536, 7, dtype=np.uint16)[: 96 * 97].reshape(96, 97)
    arr = decode_image(_png(Image.fromarray(values)))
    expected = np.clip(values.astype(np.float64) * (255.0 / 65535.0), 0, 255).astype(np.uint8)
    assert np.array_equal(arr[:, :, 0], expected) and np.array_equal(arr[:, :, 2], expected)


def test_strips_cover_an_image_taller_than_one_strip() -> None:
    width = 64
    tall = np.random.default_rng(1).integers(0, 256, (STRIP_PIXELS // width * 2 + 37, width, 4), dtype=np.uint8)
    arr = decode_image(_png(Image.fromarray(tall)))
    white = Image.new("RGBA", (width, tall.shape[0]), (255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(white, Image.fromarray(tall)).convert("RGB"))
    assert np.array_equal(arr, expected)


def test_planned_peak_of_a_near_limit_png_is_known_from_its_header() -> None:
    data = _png(Image.new("RGBA", (6300, 6300), (10, 20, 30, 128)), compress_level=1)
    full = plan_decode(data)
    small = plan_decode(data, max_side=2048)
    pil_buffer = 6300 * 6300 * 4
    assert pil_buffer + 6300 * 6300 * 3 < full.peak_bytes < pil_buffer + 6300 * 6300 * 3 + 32 * 2**20
    assert small.reduce == 3 and pil_buffer < small.peak_bytes < pil_buffer + 48 * 2**20


def test_webp_over_the_pixel_limit_is_refused_from_its_header_before_pil_allocates_canvases() -> None:
    vp8x = b"VP8X" + (10).to_bytes(4, "little") + bytes(4) + (19_999).to_bytes(3, "little") * 2
    data = b"RIFF" + (len(vp8x) + 4).to_bytes(4, "little") + b"WEBP" + vp8x
    with pytest.raises(ImageTooLarge) as info:
        plan_decode(data)
    assert info.value.reason == "too_many_pixels"
    photo = (CORPUS / "valid" / "photo.webp").read_bytes()
    assert webp_size(photo) == Image.open(io.BytesIO(photo)).size
    assert plan_decode(photo).peak_bytes > 96 * 64 * 16


def _phone_jpeg(long_side: int, orientation: int = 1) -> bytes:
    """person.jpg enlarged to a phone photo's size, as a JPEG (with an EXIF orientation when not 1)."""
    with Image.open(DATA / "photos" / "person.jpg") as im:
        f = long_side / max(im.size)
        big = im.convert("RGB").resize((round(im.width * f), round(im.height * f)), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    big.save(buf, "JPEG", quality=85, exif=exif.tobytes())
    return buf.getvalue()


def test_a_phone_photo_is_decoded_at_half_scale_when_that_lands_just_under_max_side() -> None:
    data = _phone_jpeg(4032)  # 4032x2671: at 1/2, 2016 px, 1.6 % under 2048
    plan = plan_decode(data, max_side=2048)
    assert (plan.draft_scale, plan.reduce, plan.out_width, plan.out_height) == (2, 1, 2016, 1336)
    decoded = decode(data, max_side=2048)
    assert decoded.pixels.shape == (1336, 2016, 3) and (decoded.width, decoded.height, decoded.scale) == (
        4032,
        2671,
        0.5,
    )
    with Image.open(io.BytesIO(data)) as img:  # OpenCV's scaled decode gives PIL's draft pixels
        img.draft("RGB", (4032 // 2, 2671 // 2))
        assert np.array_equal(decoded.pixels, np.asarray(img.convert("RGB")))
    rotated = decode(_phone_jpeg(4032, orientation=6), max_side=2048)  # PIL's path: turned upright, same scale
    assert rotated.pixels.shape == (2016, 1336, 3) and (rotated.width, rotated.height) == (2671, 4032)


def test_a_photo_whose_half_scale_falls_far_under_max_side_is_decoded_whole_and_shrunk_to_it() -> None:
    decoded = decode(_phone_jpeg(3200), max_side=2048)  # 1/2 would be 1600 px: 22 % under
    assert plan_decode(_phone_jpeg(3200), max_side=2048).draft_scale == 1
    assert max(decoded.pixels.shape[:2]) == 2048 and decoded.scale == 2048 / 3200
