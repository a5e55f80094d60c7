"""A `multipart/form-data` body parsed in memory, part by part, with python-multipart's parser.

Starlette's form parser spools a file part over 1 MiB to a temporary file on disk and writes every later chunk
through the thread pool, and the upload is then read back whole. An image endpoint needs the whole file in
memory anyway and the body is already bounded by the request's byte limit, so the body is read whole
(`services.common.uploads.read_body`) and parsed in one write: each part is then one run of it, copied once.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from imgcore.errors import InvalidInput


@dataclass
class Form:
    """The body's parts: each name's first part as bytes (a file or not), and the text fields (not files)."""

    data: dict[str, bytes] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FormLimits:
    max_files: int = 2
    max_fields: int = 16
    max_field_bytes: int = 64 * 1024  # a text field's bytes (a file's are bounded by the body's limit)


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, reason="bad_multipart")


class _Parts:
    """python-multipart's callbacks: one part's headers, then its data, at a time."""

    def __init__(self, charset: str, limits: FormLimits) -> None:
        self.form = Form()
        self._charset, self._limits = charset, limits
        self._files = self._fields = 0
        self._header_name = self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._is_file = False
        # The part's data as the parser hands it: given the whole body in one write, one run of the body.
        self._runs: list[tuple[bytes | bytearray, int, int]] = []
        self._size = 0

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._is_file = b"", None, False
        self._runs, self._size = [], 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise _bad('every multipart part needs a Content-Disposition "name"')
        self._name = options[b"name"].decode(self._charset, "replace")
        self._is_file = b"filename" in options
        if self._is_file:
            self._files += 1
            if self._files > self._limits.max_files:
                raise _bad(f"too many files: at most {self._limits.max_files}")
        else:
            self._fields += 1
            if self._fields > self._limits.max_fields:
                raise _bad(f"too many fields: at most {self._limits.max_fields}")

    def on_part_data(self, data: bytes | bytearray, start: int, end: int) -> None:
        self._size += end - start
        if not self._is_file and self._size > self._limits.max_field_bytes:
            raise _bad(f"field '{self._name}' is over {self._limits.max_field_bytes} bytes")
        self._runs.append((data, start, end))

    def on_part_end(self) -> None:
        assert self._name is not None
        if len(self._runs) == 1:
            whole, start, end = self._runs[0]
            data = bytes(memoryview(whole)[start:end])  # the one copy of the part
        else:
            data = b"".join(memoryview(whole)[start:end] for whole, start, end in self._runs)
        self.form.data.setdefault(self._name, data)
        if not self._is_file:
            self.form.fields[self._name] = data.decode(self._charset, "replace")


def form_encoding(content_type: str) -> tuple[bytes, str]:
    """The boundary and charset of a `multipart/form-data` content type; InvalidInput (400) without a boundary."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise _bad("multipart/form-data without a boundary")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        return boundary, codecs.lookup(charset).name
    except LookupError:
        return boundary, "latin-1"


def parse_form(body: bytes | bytearray, boundary: bytes, charset: str, limits: FormLimits) -> Form:
    """The parts of a whole `multipart/form-data` body; InvalidInput (400) for a malformed one."""
    parts = _Parts(charset, limits)
    callbacks = {
        name: getattr(parts, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        parser.write(body)  # type: ignore[arg-type]  # a bytearray reads as bytes; one write: one run per part
        parser.finalize()
    except FormParserError as exc:
        raise _bad("invalid multipart body") from exc
    return parts.form
