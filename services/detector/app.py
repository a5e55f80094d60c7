"""The detector service: `POST /v1/detect` finds the items in a photo."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from services.common.loading import BackgroundLoader, load_model
from services.common.metrics import STAGE_SECONDS
from services.common.settings import DetectorSettings
from services.common.uploads import MULTIPART_IMAGE_BODY, decode_budget, decode_upload, read_upload
from services.common.web import create_service_app
from services.common.web_json import json_response

if TYPE_CHECKING:
    from detector import Detector


def load_detector(settings: DetectorSettings) -> Detector:
    """Fetch (verify) the model and open an onnxruntime session for it."""
    from detector import Detector

    return load_model(
        settings,
        Detector,
        score_threshold=settings.score_threshold,
        iou_threshold=settings.iou_threshold,
        max_detections=settings.max_detections,
    )


def build_router(settings: DetectorSettings, loader: BackgroundLoader[Detector], pool: ThreadPoolExecutor) -> APIRouter:
    """Routes of the detector service."""
    router = APIRouter(prefix="/v1", tags=["detector"])
    limits = settings.decode_limits()
    budget = decode_budget(settings)

    @router.post("/detect", openapi_extra=MULTIPART_IMAGE_BODY)
    async def detect(request: Request) -> Response:
        """Detections (label, catalog category, score, box in original pixels), best first."""
        detector = loader.require()
        upload = await read_upload(request, limits)
        t0 = time.perf_counter()
        image = (await decode_upload(upload, limits, budget)).pixels
        t1 = time.perf_counter()
        detections = await asyncio.get_running_loop().run_in_executor(pool, detector.detect, image)
        t2 = time.perf_counter()
        STAGE_SECONDS.labels(stage="decode").observe(t1 - t0)
        STAGE_SECONDS.labels(stage="detect").observe(t2 - t1)
        body: dict[str, Any] = {
            "detections": [d.to_dict() for d in detections],
            "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
            "model": detector.info(),
            "timings_ms": {"decode": (t1 - t0) * 1e3, "detect": (t2 - t1) * 1e3},
        }
        return json_response(body)

    return router


def create_app(settings: DetectorSettings) -> FastAPI:
    """The detector service app."""
    loader: BackgroundLoader[Detector] = BackgroundLoader("detector", lambda: load_detector(settings))
    pool = ThreadPoolExecutor(max_workers=settings.inference_threads, thread_name_prefix="detect")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(loader.run())
        yield
        task.cancel()
        pool.shutdown(wait=False, cancel_futures=True)

    app = create_service_app(
        title="imgsearch detector",
        description="Finds fashion items in a photo (ONNX model pulled from the model store at startup).",
        readiness=loader.readiness,
        lifespan=lifespan,
    )
    app.include_router(build_router(settings, loader, pool))
    return app
