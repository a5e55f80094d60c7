"""Reading an image from a request: size-limited while streaming, then decoded once off the event loop,
within the service's decode memory budget.

Two forms are accepted by every image endpoint:
- public: `multipart/form-data` with the file in field `image` (other fields are returned as text);
- internal fast path: raw decoded pixels (see `services.common.wire`), sent by the gateway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Message, Receive

from imgcore.decode_plan import short_header
from imgcore.errors import ImageTooLarge, InvalidImage, InvalidInput
from imgcore.image import Decoded, DecodeLimits, decode, fit, plan_decode
from services.common.decode_budget import MIB, DecodeBudget
from services.common.multipart import FormLimits, form_encoding, parse_form
from services.common.settings_shared import DecodeGroup
from services.common.wire import HEIGHT_HEADER, RGB_CONTENT_TYPE, WIDTH_HEADER, rgb_from_body

IMAGE_FIELD = "image"
# Uploads up to this size whose header is short (imgcore.decode_plan.short_header: a JPEG or PNG with few
# segments before its pixels, or a WebP) have it read on the event loop, in well under a millisecond; the
# others are planned in a worker thread (a JPEG of 60,000 empty markers took 0.3 s to plan).
INLINE_PLAN_BYTES = 256 * 1024
T = TypeVar("T")

# OpenAPI description of the request body of image endpoints (parsed by hand so limits apply while streaming).
MULTIPART_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [IMAGE_FIELD],
                    "properties": {IMAGE_FIELD: {"type": "string", "format": "binary"}},
                }
            },
            RGB_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@dataclass
class Upload:
    """An uploaded image: encoded bytes (multipart) or already-decoded pixels (fast path)."""

    data: bytes | None = None
    pixels: np.ndarray | None = None
    fields: dict[str, str] = field(default_factory=dict)


def _too_large(max_bytes: int) -> ImageTooLarge:
    return ImageTooLarge(f"request body exceeds {max_bytes} bytes", reason="too_many_bytes")


def _limited(receive: Receive, max_bytes: int) -> Receive:
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise _too_large(max_bytes)
        return message

    return receive_limited


def _check_declared_length(request: Request, max_bytes: int) -> Request:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    return Request(request.scope, _limited(request.receive, max_bytes))


async def read_body(request: Request, max_bytes: int) -> bytearray:
    """The whole body, refused with 413 as soon as it grows past `max_bytes`."""
    limited = _check_declared_length(request, max_bytes)
    body = bytearray()
    async for chunk in limited.stream():
        body += chunk
    return body


async def read_upload(request: Request, limits: DecodeLimits, *, accept_pixels: bool = True) -> Upload:
    """Read the image of an image endpoint in either accepted form, without decoding it.

    `accept_pixels=False` (the public gateway): raw pixels are refused like any other content type, before
    the body is read (a raw body may be 8 times the upload limit).
    """
    content_type = request.headers.get("content-type", "")
    if accept_pixels and content_type.startswith(RGB_CONTENT_TYPE):
        body = await read_body(request, limits.max_bytes * 8)  # pixels are larger than the encoded upload
        pixels = rgb_from_body(body, request.headers.get(HEIGHT_HEADER), request.headers.get(WIDTH_HEADER), limits)
        return Upload(pixels=pixels)
    if not content_type.startswith("multipart/form-data"):
        raise InvalidImage(f"send the image as multipart/form-data in field '{IMAGE_FIELD}'", reason="bad_content_type")
    boundary, charset = form_encoding(content_type)  # a 400 before the body is read
    body = await read_body(request, limits.max_bytes + 64 * 1024)
    form = parse_form(body, boundary, charset, FormLimits())
    data = form.data.get(IMAGE_FIELD)
    if data is None:
        raise InvalidInput(f"multipart field '{IMAGE_FIELD}' is missing", reason="missing_image")
    form.fields.pop(IMAGE_FIELD, None)
    return Upload(data=data, fields=form.fields)


async def decode_upload(upload: Upload, limits: DecodeLimits, budget: DecodeBudget, max_side: int = 0) -> Decoded:
    """The upload as upright RGB uint8 at most `max_side` wide and high (0: full size), with its full size.

    Encoded bytes are decoded in a worker thread once their planned peak memory fits in `budget`.
    """
    return await decode_upload_as(upload, limits, budget, max_side, _same)


async def decode_upload_as(
    upload: Upload, limits: DecodeLimits, budget: DecodeBudget, max_side: int, then: Callable[[Decoded], T]
) -> T:
    """`then(decoded upload)`, run in the decode's own worker thread (encoded bytes) or here (pixels).

    A thread hop costs 0.3-0.4 ms on a busy event loop (the gateway's decode stage spent 1.1 ms in three):
    the header of a small upload is read here, and `then` shares the decode's thread.
    """
    if upload.pixels is not None:
        return then(fit(upload.pixels, max_side))
    data = upload.data
    assert data is not None
    if len(data) <= INLINE_PLAN_BYTES and short_header(data):
        plan = plan_decode(data, limits, max_side)
    else:
        plan = await run_in_threadpool(plan_decode, data, limits, max_side)
    return await budget.run(plan.peak_bytes, _decoded_then, then, data, limits, max_side)


def _decoded_then(then: Callable[[Decoded], T], data: bytes, limits: DecodeLimits, max_side: int) -> T:
    return then(decode(data, limits, max_side))


def _same(decoded: Decoded) -> Decoded:
    return decoded


def decode_budget(settings: DecodeGroup) -> DecodeBudget:
    """The decode memory budget these settings describe."""
    return DecodeBudget(settings.memory_mib * MIB, settings.wait_s)
