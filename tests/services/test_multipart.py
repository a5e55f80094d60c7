"""form_encoding and parse_form (services/common/multipart.py): a body's parts in memory, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from imgcore.errors import InvalidInput
from services.common.multipart import Form, FormLimits, form_encoding, parse_form

BOUNDARY = "b0undary-Zx9"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def _body(*parts: tuple[str, str | None, bytes]) -> bytes:
    """(name, filename or None, data) parts, framed as a browser frames them."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        out += b"Content-Type: application/octet-stream\r\n" if filename else b""
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def _read(body: bytes, limits: FormLimits | None = None, content_type: str = CONTENT_TYPE) -> Form:
    return parse_form(body, *form_encoding(content_type), limits or FormLimits())


def _awkward_bytes(n: int) -> bytes:
    """Random bytes with many near-boundaries inside: CR LF, then the boundary's first characters."""
    data = bytearray(np.random.default_rng(3).integers(0, 256, n, dtype=np.uint8).tobytes())
    for at in range(100, n - 64, 997):
        data[at : at + 10] = b"\r\n--b0und"
    return bytes(data)


def test_a_file_and_fields_come_back_byte_for_byte() -> None:
    image = _awkward_bytes(300_000)
    form = _read(_body(("boxes", None, b"[[1,2,3,4]]"), ("image", "a.jpg", image), ("k", None, "ünï".encode())))
    assert form.data["image"] == image
    assert form.fields == {"boxes": "[[1,2,3,4]]", "k": "ünï"}
    assert "image" not in form.fields  # a file is no text field


def test_the_first_part_of_a_name_wins_and_an_empty_file_is_kept() -> None:
    form = _read(_body(("image", "a.jpg", b""), ("image", "b.jpg", b"second")))
    assert form.data["image"] == b""


def test_an_image_sent_as_a_text_field_keeps_its_bytes() -> None:
    form = _read(_body(("image", None, b"\xff\xd8\xff\xe0 not text")))
    assert form.data["image"] == b"\xff\xd8\xff\xe0 not text"


@pytest.mark.parametrize(
    ("body", "limits", "message"),
    [
        (_body(("a", "1", b""), ("b", "2", b""), ("c", "3", b"")), FormLimits(max_files=2), "too many files"),
        (_body(*[(f"f{i}", None, b"x") for i in range(4)]), FormLimits(max_fields=3), "too many fields"),
        (_body(("boxes", None, b"x" * 101)), FormLimits(max_field_bytes=100), "over 100 bytes"),
        (b"--b0undary-Zx9\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b0undary-Zx9--\r\n", None, "name"),
        (b"--nope", None, "invalid multipart"),
    ],
)
def test_over_a_limit_or_malformed_is_invalid_input(body: bytes, limits: FormLimits | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        _read(body, limits=limits)
    assert caught.value.status == 400


def test_a_field_at_its_limit_passes() -> None:
    form = _read(_body(("boxes", None, b"x" * 100)), limits=FormLimits(max_field_bytes=100))
    assert form.fields["boxes"] == "x" * 100


def test_no_boundary_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="boundary"):
        _read(_body(("image", "a.jpg", b"x")), content_type="multipart/form-data")
