"""OpenCV's fast path gives exactly PIL's pixels, and everything it should not take still goes to PIL."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from imgcore.errors import InvalidImage
from imgcore.fast_decode import decode_fast, decode_png_fast, fast_decodable, plain_png
from imgcore.image import decode, decode_image
from imgcore.pixels import fitted_size, resize_to
from imgcore.png_header import png_header
from tests.helpers.paths import DATA

PHOTOS = sorted((DATA / "photos").rglob("*.jpg"))
VALID = DATA / "bad" / "valid"


def _png(mode: str, size: tuple[int, int] = (97, 61), **save: object) -> bytes:
    rng = np.random.default_rng(len(mode))
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, "PNG", **save)
    return buf.getvalue()


def _jpeg(mode: str, quality: int = 85, **save: object) -> bytes:
    photo = Image.open(PHOTOS[0]).convert(mode)
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=quality, **save)
    return buf.getvalue()


def _takes(data: bytes) -> bool:
    """Whether a fast path takes the image: plain PNGs without PIL, JPEGs after PIL read the header."""
    if data.startswith(b"\x89PNG"):
        return plain_png(data) is not None
    return fast_decodable(Image.open(io.BytesIO(data)), data)


def _fast_pixels(data: bytes) -> np.ndarray | None:
    header = plain_png(data)
    if header is not None:
        return decode_png_fast(data, header)
    return decode_fast(Image.open(io.BytesIO(data)), data)


def _pil_pixels(data: bytes) -> np.ndarray:
    """What the PIL path makes of an upright image without alpha: its pixels as RGB."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


FAST_CASES = {p.name: p.read_bytes() for p in PHOTOS} | {
    "progressive.jpg": (VALID / "progressive.jpg").read_bytes(),
    "grey.png": (VALID / "grey.png").read_bytes(),
    "wide_4000x40.png": (VALID / "wide_4000x40.png").read_bytes(),
    "grey-generated.png": _png("L"),
    "rgb-generated.png": _png("RGB"),
    "rgb-interlaced.png": _png("RGB", optimize=False, interlace=1),
    "catalog-style.png": _png("L", (112, 112)),
    "grey.jpg": _jpeg("L"),
    "subsampling-444.jpg": _jpeg("RGB", 95, subsampling=0),
    "progressive-generated.jpg": _jpeg("RGB", 70, progressive=True),
}


@pytest.mark.parametrize("name", sorted(FAST_CASES))
def test_the_fast_path_takes_plain_photos_and_gives_pils_exact_pixels(name: str) -> None:
    data = FAST_CASES[name]
    assert _takes(data)
    pixels = _fast_pixels(data)
    assert pixels is not None and pixels.dtype == np.uint8 and pixels.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(pixels, _pil_pixels(data))
    np.testing.assert_array_equal(decode_image(data), pixels)  # and decode() uses it


@pytest.mark.parametrize(
    "name",
    [
        "exif_rotated.jpg",  # rotation: PIL applies it
        "trailing_garbage.jpg",  # no end-of-image marker at the end: could be truncated
        "cmyk.jpg",
        "rgba.png",
        "grey_alpha.png",
        "grey16.png",
        "palette.png",
        "bilevel.png",
        "animated.gif",
        "photo.webp",
    ],
)
def test_images_the_fast_path_could_get_wrong_go_to_pil(name: str) -> None:
    data = (VALID / name).read_bytes()
    assert not _takes(data)
    assert decode_image(data).ndim == 3  # and PIL still decodes them


def test_a_png_with_exif_or_transparency_goes_to_pil() -> None:
    with_exif = _png("RGB", exif=Image.Exif().tobytes())
    with_key = _png("RGB", transparency=(0, 0, 0))
    for data in (with_exif, with_key):
        assert not _takes(data)
        np.testing.assert_array_equal(decode_image(data), _pil_pixels(data))


def test_a_plain_png_is_decoded_without_pil(monkeypatch: pytest.MonkeyPatch) -> None:
    data = FAST_CASES["catalog-style.png"]
    expected = _pil_pixels(data)

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("PIL opened a plain PNG")

    monkeypatch.setattr(Image, "open", refuse)
    np.testing.assert_array_equal(decode_image(data), expected)


def test_the_png_header_reader_refuses_what_is_not_a_whole_chunk_list() -> None:
    data = FAST_CASES["rgb-generated.png"]
    header = png_header(data)
    assert header is not None and (header.width, header.height, header.bit_depth, header.colour_type) == (97, 61, 8, 2)
    assert header.exact and header.chunks >= {b"IHDR", b"IDAT", b"IEND"}
    assert not png_header(data + b"more").exact  # type: ignore[union-attr]
    assert png_header(data[:-6]) is None  # IEND cut
    assert png_header(data[:40]) is None  # IDAT runs past the end
    assert png_header(b"GIF89a" + data[6:]) is None
    assert png_header(data[:8] + data[12:]) is None  # IHDR not where it must be
    assert png_header(data[:8] + struct.pack(">I", 14) + data[12:]) is None  # IHDR's length is not 13


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_a_truncated_image_is_still_a_typed_error(kind: str) -> None:
    whole = PHOTOS[0].read_bytes() if kind == "jpeg" else _png("RGB", (300, 200))
    cut = whole[: len(whole) * 2 // 3]
    with pytest.raises(InvalidImage) as info:
        decode(cut)
    assert info.value.reason == "corrupt"


def test_a_reduced_size_decode_still_matches_the_full_one_resized() -> None:
    data = (DATA / "photos" / "dog.jpg").read_bytes()  # 768 px: fitted to 500 without DCT scaling
    fitted = decode(data, max_side=500)
    assert fitted.pixels.shape[:2] == (375, 500) and (fitted.width, fitted.height) == (768, 576)
    np.testing.assert_array_equal(fitted.pixels, resize_to(_pil_pixels(data), fitted_size(768, 576, 500)))
