"""Domain errors. Raised by library code, mapped to HTTP in exactly one place (services/common/errors.py)."""

from __future__ import annotations

from typing import Any


class ImgSearchError(Exception):
    """Base class. `status` is the HTTP status the services map it to; `reason` labels metrics.

    Subclasses set both in their header (`class NotFound(ImgSearchError, status=404, reason="not_found")`),
    so the errors below read as one table; one left out is inherited.
    """

    status: int = 500
    reason: str = "internal"

    def __init_subclass__(cls, *, status: int | None = None, reason: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status
        if reason is not None:
            cls.reason = reason

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidInput(ImgSearchError, status=400, reason="invalid_input"):
    """A request the caller has to change: a bad parameter, box or vector."""


class InvalidImage(InvalidInput, status=415, reason="invalid_image"):
    """Bytes that are not a decodable image of a supported format."""


class ImageTooLarge(InvalidInput, status=413, reason="too_large"):
    """Too many bytes or too many pixels (decompression bombs)."""


class ObjectTooLarge(ImgSearchError, status=413, reason="too_large"):
    """A stored object larger than its reader allows (an image limit, a size a manifest lists): not read past it."""


class NotFound(ImgSearchError, status=404, reason="not_found"):
    """No such item, category, image or stored object."""


class ModelNotReady(ImgSearchError, status=503, reason="not_ready"):
    """The model or index is still loading (or failed to load): try again later."""


class StoreError(ImgSearchError, status=503, reason="store"):
    """A model or index store could not deliver an object."""


class ChecksumMismatch(StoreError, reason="checksum"):
    """An object whose bytes do not match the sha256 it was published with."""


class IndexMismatch(ImgSearchError, status=409, reason="index_mismatch"):
    """An index that does not belong to the serving embedder, or whose files do not verify."""
