"""The rebuild's pixel work (decode, thumbnail, preprocess) in worker processes instead of the job's threads.

On two cores the model already fills, the decode threads compete with the job's own thread for the GIL:
PIL's PNG decoder and WebP encoder hold it for most of an image, so the thread that hands the next batch
to onnxruntime waits for them while the model's cores idle. Worker processes have GILs of their own, and
their lower scheduling priority (`NICENESS`) lets the model's threads take a core first whenever both
want one, so the pixel work fills the model's idle gaps instead of delaying it.

The workers are forked from the job once, before its threads start (`DecodePool.start`), so they inherit
the embedder's preprocessing as it is (nothing is pickled but image bytes in, thumbnail and pixels out);
they never run the model.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from ann_index.build.thumb_reuse import reusable
from ann_index.thumbs import ThumbFormat, make_thumbnail
from imgcore.image import DecodeLimits, decode_image

NICENESS = 10  # added to the workers' nice value: the model's threads come first


class Preprocessor(Protocol):
    # The search path's own preprocessing of a whole image (embedder.Embedder.whole_image_pixels): the index
    # never needs the embedder's code, and a catalog image searched as it is finds its own vector.
    def whole_image_pixels(self, image: np.ndarray, foreground: bool) -> tuple[np.ndarray, Any]: ...


@dataclass(frozen=True)
class PixelWork:
    """Encoded image -> (thumbnail, preprocessed pixels or None when `embed` is false: a cache hit)."""

    embedder: Preprocessor
    limits: DecodeLimits
    crop: Literal["full", "foreground"]
    thumbnail_format: ThumbFormat = "jpeg"

    def __call__(self, data: bytes, embed: bool) -> tuple[bytes, np.ndarray | None]:
        # A small plain PNG/JPEG is its own JPEG-mode thumbnail; WebP mode always re-encodes (fewer bytes).
        reuse = self.thumbnail_format == "jpeg" and reusable(data)
        if reuse and not embed:
            # A cache hit: these very bytes (same sha256) decoded and embedded before, so nothing to decode.
            return data, None
        image = decode_image(data, self.limits)
        thumb = data if reuse else make_thumbnail(image, fmt=self.thumbnail_format)
        if not embed:
            return thumb, None
        return thumb, self.embedder.whole_image_pixels(image, self.crop == "foreground")[0]


_WORK: PixelWork | None = None  # a worker process's copy, set once when it starts


def _start_worker(work: PixelWork, niceness: int) -> None:
    global _WORK
    _WORK = work
    os.nice(niceness)


def _in_worker(data: bytes, embed: bool) -> tuple[bytes, np.ndarray | None]:
    if _WORK is None:
        raise RuntimeError("decode worker was not initialised")
    return _WORK(data, embed)


class DecodePool:
    """Runs `PixelWork` in `processes` forked workers, or in the calling thread when `processes` is 0."""

    def __init__(self, work: PixelWork, processes: int) -> None:
        self.work = work
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> DecodePool:
        """Fork the workers now, while the job has no threads of its own that a fork could catch mid-lock."""
        if self.processes > 0 and self._pool is None:
            context = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(
                self.processes, mp_context=context, initializer=_start_worker, initargs=(self.work, NICENESS)
            )
            self._pool.submit(int).result()  # with fork, the first submit starts every worker
        return self

    def __call__(self, data: bytes, embed: bool) -> tuple[bytes, np.ndarray | None]:
        if self._pool is None:
            return self.work(data, embed)
        return self._pool.submit(_in_worker, data, embed).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> DecodePool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
