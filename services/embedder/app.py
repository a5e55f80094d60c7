"""The embedder service: `POST /v1/embed` gives one L2-normalised vector per box, micro-batched."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter, FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from services.common.boxes import Box, clip_box, parse_boxes_json
from services.common.loading import BackgroundLoader, load_model
from services.common.metrics import STAGE_SECONDS
from services.common.settings import EmbedderSettings
from services.common.uploads import MULTIPART_IMAGE_BODY, decode_budget, decode_upload, read_upload
from services.common.web import create_service_app
from services.common.web_json import json_response
from services.common.wire import vectors_to_b64
from services.embedder.batcher import MicroBatcher
from services.embedder.kept import ID_PATTERN, KeptImages

if TYPE_CHECKING:
    from embedder import Embedder


def load_embedder(settings: EmbedderSettings) -> Embedder:
    """Fetch (verify) the model and open an onnxruntime session for it."""
    from embedder import Embedder

    return load_model(settings, Embedder, batch_size=settings.max_batch_size)


def _crops(embedder: Embedder, image: np.ndarray, boxes: list[Box | None]) -> np.ndarray:
    from embedder.transforms import chw_batch

    return chw_batch([embedder.preprocess_pixels(image, box) for box in boxes])


def _whole(embedder: Embedder, image: np.ndarray, foreground: bool) -> tuple[np.ndarray, Box | None]:
    """The whole image through the rebuild's own preprocessing (`Embedder.whole_image_pixels`)."""
    from embedder.transforms import chw_batch

    pixels, box = embedder.whole_image_pixels(image, foreground)
    return chw_batch([pixels]), None if box is None else (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


class EmbedderState:
    """The loaded model and the batcher in front of it."""

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        self.loader: BackgroundLoader[Embedder] = BackgroundLoader("embedder", lambda: load_embedder(settings))
        self.decode_budget = decode_budget(settings.decode)
        self.batcher = MicroBatcher(self._run, settings.max_batch_size, settings.max_batch_wait_ms / 1e3)
        self.kept = KeptImages(settings.keep_images_mib * 2**20)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.loader.require().run(batch)  # L2-normalised rows

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ready, details = self.loader.readiness()
        if ready and self.loader.value is not None:
            details["model"]["dim"] = int(self.loader.value.dim)
            details["model"]["metric"] = self.loader.value.metric
        return ready, details


@dataclass
class _Prepared:
    rows: np.ndarray
    boxes: list[list[float]]
    timings_ms: dict[str, float]


async def _prepare(
    state: EmbedderState, request: Request, boxes: str | None, foreground: bool, kept: tuple[str | None, str | None]
) -> _Prepared:
    """Read and decode the image (or take the kept one), pick the boxes, crop and preprocess them (off the
    event loop). `kept`: (keep the decoded image under this id, use the image kept under this id)."""
    embedder = state.loader.require()
    limits = state.settings.uploads.decode_limits()
    keep, image_id = kept
    fields: dict[str, str] = {}
    t0 = time.perf_counter()
    if image_id is not None:
        image = state.kept.get(image_id)
    else:
        upload = await read_upload(request, limits)
        t0, fields = time.perf_counter(), upload.fields
        image = (await decode_upload(upload, limits, state.decode_budget)).pixels
        if keep is not None:
            state.kept.put(keep, image)
    t1 = time.perf_counter()
    height, width = image.shape[:2]
    boxes_text = boxes if boxes is not None else fields.get("boxes")
    wanted: list[Box | None]
    if boxes_text:
        wanted = [clip_box(b, width, height) for b in parse_boxes_json(boxes_text, state.settings.max_boxes)]
        rows = (
            await run_in_threadpool(_crops, embedder, image, wanted)
            if wanted
            else np.zeros((0, 3, embedder.input_size, embedder.input_size), np.float32)
        )
    else:
        rows, whole_box = await run_in_threadpool(_whole, embedder, image, foreground)
        wanted = [whole_box]
    t2 = time.perf_counter()
    STAGE_SECONDS.labels(stage="decode").observe(t1 - t0)
    STAGE_SECONDS.labels(stage="preprocess").observe(t2 - t1)
    used = [[0.0, 0.0, float(width), float(height)] if b is None else list(b) for b in wanted]
    return _Prepared(rows, used, {"decode": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3})


def build_router(state: EmbedderState) -> APIRouter:
    """Routes of the embedder service."""
    router = APIRouter(prefix="/v1", tags=["embedder"])

    @router.post("/embed", openapi_extra=MULTIPART_IMAGE_BODY)
    async def embed(
        request: Request,
        boxes: str | None = Query(None, description="JSON list of [x1,y1,x2,y2]; else the whole image."),
        foreground: bool = Query(False, description="Without boxes, crop to the item on its plain background."),
        fmt: str = Query(
            "json", alias="format", pattern="^(json|b64)$", description="Vectors as JSON lists or base64 f32."
        ),
        keep: str | None = Query(None, pattern=ID_PATTERN, description="Keep the decoded image a few s under this id."),
        image_id: str | None = Query(None, pattern=ID_PATTERN, description="Use the image kept as this id; no body."),
    ) -> Response:
        """One L2-normalised vector per box (or one for the whole image)."""
        embedder = state.loader.require()
        state.batcher.announce()  # the batcher waits for announced requests, never for nobody
        try:
            prepared = await _prepare(state, request, boxes, foreground, (keep, image_id))
        except BaseException:
            state.batcher.withdraw()
            raise
        t2 = time.perf_counter()
        if len(prepared.rows):
            vectors = await state.batcher.submit(prepared.rows, announced=True)
        else:
            state.batcher.withdraw()
            vectors = np.zeros((0, embedder.dim), np.float32)
        seconds = time.perf_counter() - t2
        STAGE_SECONDS.labels(stage="embed").observe(seconds)
        body: dict[str, Any] = {
            "dim": int(embedder.dim),
            "boxes": prepared.boxes,
            "model": embedder.info(),
            "timings_ms": {**prepared.timings_ms, "embed": seconds * 1e3},
        }
        if fmt == "b64":
            body["vectors_b64"] = vectors_to_b64(vectors)
        else:
            body["vectors"] = vectors
        return json_response(body)

    return router


def create_app(settings: EmbedderSettings) -> FastAPI:
    """The embedder service app."""
    state = EmbedderState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(state.loader.run())
        state.batcher.start()
        yield
        task.cancel()
        await state.batcher.stop()

    app = create_service_app(
        title="imgsearch embedder",
        description="Turns item crops into L2-normalised vectors (metric learning), batching concurrent requests.",
        readiness=state.readiness,
        lifespan=lifespan,
    )
    app.include_router(build_router(state))
    return app
