"""The values the gateway's search pipeline passes around: what was asked, the cache key, the decoded photo
as forwarded to the backends, what detection and embedding produced, and the response's timings."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imgcore.image import Decoded
from imgcore.index_wire import GROUP_PRODUCT
from services.common.boxes import Box
from services.common.uploads import Upload
from services.common.web_json import dumps
from services.common.wire import PixelBody, rgb_body
from services.gateway.dedupe import query_options
from services.gateway.regions import Region

STAGES = ("decode", "detect", "embed", "search")
# What a cached answer holds besides its JSON bytes: the key (digest, params, version, models), the cache's slot
# and the bytes object's header; measured with tracemalloc (about 0.5 kB with a box and a category, before the
# models' ~0.2 kB of sha256s were added), rounded up.
ENTRY_OVERHEAD_BYTES = 1024


@dataclass(frozen=True)
class SearchParams:
    """What the caller asked for besides the image."""

    k: int
    category: str | None = None
    box: Box | None = None
    filter: str | None = None  # passed to the index as given: it parses it (400 naming the mistake)
    group: str = GROUP_PRODUCT  # one hit per product, or "none": one per image (issue 28)
    dedupe: bool = False  # a near-duplicate of a higher-ranked hit is left out

    def index_options(self) -> dict[str, Any]:
        """What the index's query takes besides vectors, k and categories."""
        return query_options(self.filter, self.group, self.dedupe)


@dataclass(frozen=True)
class CacheKey:
    """Everything an answer depends on that can differ between two requests to one gateway."""

    image: str  # sha256 of the encoded upload, or of the decoded pixels
    shape: tuple[int, ...] | None  # of decoded pixels: the same bytes as 16x64 and as 64x16 are two images
    params: SearchParams
    index_version: str | None
    # The detector's and embedder's identity (`served_models`): a roll-out of either changes the answer.
    models: str | None = None

    @classmethod
    def of(cls, upload: Upload, params: SearchParams, index_version: str | None, models: str | None = None) -> CacheKey:
        if upload.pixels is not None:
            digest = hashlib.sha256(upload.pixels.tobytes()).hexdigest()
            return cls(digest, tuple(upload.pixels.shape), params, index_version, models)
        return cls(hashlib.sha256(upload.data or b"").hexdigest(), None, params, index_version, models)


@dataclass(frozen=True)
class Photo:
    """The decoded upload's size, and what is forwarded to the backends: at most `forward_max_side` pixels."""

    width: int
    height: int
    forward: np.ndarray
    scale: float  # forward pixels per original pixel
    pixels: PixelBody  # the forwarded image's raw RGB body

    def to_original(self, box: list[float] | Box) -> list[float]:
        return scaled(box, 1 / self.scale)

    def to_forward(self, box: list[float]) -> list[float]:
        return scaled(box, self.scale)


@dataclass
class Embedded:
    """What detection and embedding produced for one photo."""

    regions: list[Region]
    vectors: np.ndarray
    detect_s: float
    detector_model: dict[str, Any] | None
    embedder_model: dict[str, Any] | None
    source: str  # detector, user_box, detector_error, detector_timeout
    missing_partitions: list[int] | None = None  # index partitions left out of the answer (issue 16)
    pose_model: dict[str, Any] | None = None  # the detector's pose model, part of its identity (#15)
    ignored: list[Region] = field(default_factory=list)  # detected, not searched (#15)
    embed_s: float | None = None  # the speculative whole-image embed's own time, when its vector was used


def photo_of(decoded: Decoded) -> Photo:
    return Photo(decoded.width, decoded.height, decoded.pixels, decoded.scale, rgb_body(decoded.pixels))


def consume_outcome(task: asyncio.Task[Any]) -> None:
    """Retrieve a speculative task's outcome so an unused failure is not reported as unhandled."""
    if not task.cancelled():
        task.exception()


def scaled(box: Box | list[float], factor: float) -> list[float]:
    return [round(float(v) * factor, 1) for v in box]


def response_body(answer: bytes, *, cached: bool, timings: dict[str, float]) -> bytes:
    """This request's `cached` and `timings_ms` followed by the answer's JSON object, spliced (not re-serialised)."""
    head = dumps({"cached": cached, "timings_ms": timings})
    return head[:-1] + b"," + answer[1:]


def stage_timings(marks: list[float]) -> dict[str, float]:
    """Milliseconds of each stage between consecutive marks (start, decoded, detected, embedded, searched)."""
    timings = {stage: (end - begin) * 1e3 for stage, begin, end in zip(STAGES, marks[:-1], marks[1:], strict=True)}
    timings["total"] = (marks[-1] - marks[0]) * 1e3
    return timings
