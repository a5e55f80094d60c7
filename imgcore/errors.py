"""Domain errors. Raised by library code, mapped to HTTP in exactly one place (services/common/errors.py)."""

from __future__ import annotations


class ImgSearchError(Exception):
    """Base class. `status` is the HTTP status the services map it to; `reason` labels metrics."""

    status: int = 500
    reason: str = "internal"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidInput(ImgSearchError):
    status = 400
    reason = "invalid_input"


class InvalidImage(InvalidInput):
    """Bytes that are not a decodable image of a supported format."""

    status = 415
    reason = "invalid_image"


class ImageTooLarge(InvalidInput):
    """Too many bytes or too many pixels (decompression bombs)."""

    status = 413
    reason = "too_large"


class NotFound(ImgSearchError):
    status = 404
    reason = "not_found"


class ModelNotReady(ImgSearchError):
    status = 503
    reason = "not_ready"


class StoreError(ImgSearchError):
    """A model or index store could not deliver an object."""

    status = 503
    reason = "store"


class ChecksumMismatch(StoreError):
    reason = "checksum"


class IndexMismatch(ImgSearchError):
    """An index that does not belong to the serving embedder, or whose files do not verify."""

    status = 409
    reason = "index_mismatch"
