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
from services.detector.garments import find_items, people_loader, pose_loader, readiness, side_pool

if TYPE_CHECKING:
    from detector import Detector
    from detector.multipose import MultiPoseEstimator
    from detector.pose import PoseEstimator


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


def build_router(
    settings: DetectorSettings,
    loader: BackgroundLoader[Detector],
    pool: ThreadPoolExecutor,
    pose: BackgroundLoader[PoseEstimator] | None = None,
    people: BackgroundLoader[MultiPoseEstimator] | None = None,
    side: ThreadPoolExecutor | None = None,
) -> APIRouter:
    """Routes of the detector service."""
    router = APIRouter(prefix="/v1", tags=["detector"])
    limits = settings.uploads.decode_limits()
    budget = decode_budget(settings.decode)
    inflight = [0]  # photos in find_items now (the event loop's thread only)

    @router.post("/detect", openapi_extra=MULTIPART_IMAGE_BODY)
    async def detect(request: Request) -> Response:
        """Detections (label, catalog category, score, box in original pixels), best first; then each person's
        garments (top, bottom, footwear) with `part_of`, the person's index; people only the multi-pose model
        found have `"source": "pose"`."""
        detector = loader.require()
        pose_model = pose.require() if pose is not None else None
        people_model = people.require() if people is not None else None
        upload = await read_upload(request, limits)
        t0 = time.perf_counter()
        image = (await decode_upload(upload, limits, budget)).pixels
        t1 = time.perf_counter()
        beside = side if inflight[0] < settings.people.beside_max_inflight else None
        inflight[0] += 1
        try:
            detections = await asyncio.get_running_loop().run_in_executor(
                pool, find_items, detector, pose_model, people_model, image, settings, beside
            )
        finally:
            inflight[0] -= 1
        t2 = time.perf_counter()
        STAGE_SECONDS.labels(stage="decode").observe(t1 - t0)
        STAGE_SECONDS.labels(stage="detect").observe(t2 - t1)
        body: dict[str, Any] = {
            "detections": detections,
            "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
            "model": detector.info(),
            "pose_model": pose_model.info() if pose_model is not None else None,
            "people_model": people_model.info() if people_model is not None else None,
            "timings_ms": {"decode": (t1 - t0) * 1e3, "detect": (t2 - t1) * 1e3},
        }
        return json_response(body)

    return router


def create_app(settings: DetectorSettings) -> FastAPI:
    """The detector service app."""
    loader: BackgroundLoader[Detector] = BackgroundLoader("detector", lambda: load_detector(settings))
    pool = ThreadPoolExecutor(max_workers=settings.runtime.inference_threads, thread_name_prefix="detect")
    # The multi-pose pass beside each photo's detector run, and its people's crops two at a time: its own
    # pool, since a detect worker waits on these and would deadlock a shared one.
    side = side_pool(2 * settings.runtime.inference_threads)
    pose = pose_loader(settings)
    people = people_loader(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(one.run()) for one in (loader, pose, people) if one is not None]
        yield
        for task in tasks:
            task.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        side.shutdown(wait=False, cancel_futures=True)

    app = create_service_app(
        title="imgsearch detector",
        description="Finds fashion items in a photo (ONNX model pulled from the model store at startup).",
        readiness=lambda: readiness(loader, pose, people),
        lifespan=lifespan,
    )
    app.include_router(build_router(settings, loader, pool, pose, people, side))
    return app
