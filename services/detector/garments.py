"""Garments in the detector service: the pose models are loaded beside the detector; the multi-pose model's
people are fused with the detector's (those only it found: `"source": "pose"`), every person's top, bottom and
footwear are added to the detections (`"part_of"`: the person's index), then the separate items of a flat-lay
(`"source": "foreground"`), so one call from the gateway still returns every item of the photo."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from services.common.loading import BackgroundLoader, fetch_model, warm_up
from services.common.metrics import STAGE_SECONDS
from services.common.settings import DetectorSettings

if TYPE_CHECKING:
    import numpy as np

    from detector import Detector
    from detector.multipose import MultiPoseEstimator
    from detector.pose import PoseEstimator


T = TypeVar("T")
SPARE_NICE = 10  # how much lower the side threads run than the detector's own


def _spare_cores_only() -> None:
    """A side thread runs at a lower priority than the photos' own detector runs: where cores are short, the
    detector keeps its core (a photo without people is not slowed by a pose pass it will cancel) and the pass
    runs in what is left; where a core is free, it runs there at once."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SPARE_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: full priority, still correct
        pass


def side_pool(workers: int) -> ThreadPoolExecutor:
    """The pool for the multi-pose pass beside the detector and the people's crops (see _spare_cores_only)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="people", initializer=_spare_cores_only)


def load_pose(settings: DetectorSettings) -> PoseEstimator:
    """Fetch (verify) the pose model from the model store and open it."""
    from detector.pose import PoseEstimator

    folder = fetch_model(settings, settings.pose.model_uri, settings.pose.model_sha256)
    return PoseEstimator(
        folder,
        intra_threads=settings.runtime.ort_intra_threads,
        inter_threads=settings.runtime.ort_inter_threads,
        verify_sha256=False,  # the store has just verified it against its card
    )


def load_people(settings: DetectorSettings) -> MultiPoseEstimator:
    """Fetch (verify) the multi-pose model, open it, warm it up (its first run is on a search otherwise)."""
    from detector.multipose import MultiPoseEstimator

    folder = fetch_model(settings, settings.people.model_uri, settings.people.model_sha256)
    model = MultiPoseEstimator(
        folder,
        intra_threads=settings.runtime.ort_intra_threads,
        inter_threads=settings.runtime.ort_inter_threads,
        verify_sha256=False,
    )
    if settings.runtime.warm_up:
        warm_up(model)
    return model


def pose_loader(settings: DetectorSettings) -> BackgroundLoader[PoseEstimator] | None:
    """The pose model's loader; None when garments are off (`pose_model_uri` empty)."""
    if not settings.pose.model_uri:
        return None
    return BackgroundLoader("pose", lambda: load_pose(settings))


def people_loader(settings: DetectorSettings) -> BackgroundLoader[MultiPoseEstimator] | None:
    """The multi-pose model's loader; None when it is off (`people_model_uri` or `pose_model_uri` empty)."""
    if not settings.people.model_uri or not settings.pose.model_uri:
        return None
    return BackgroundLoader("people", lambda: load_people(settings))


def once(compute: Callable[[], T]) -> Callable[[], T]:
    """compute() on the first call, its value on every later one, from any thread: the pose pass's side thread
    and the flat-lay step may both ask, and the analysis must run once."""
    lock = threading.Lock()
    value: list[T] = []

    def get() -> T:
        with lock:
            if not value:
                value.append(compute())
            return value[0]

    return get


def find_items(
    detector: Detector,
    pose: PoseEstimator | None,
    people: MultiPoseEstimator | None,
    image: np.ndarray,
    settings: DetectorSettings,
    side: Executor | None = None,
) -> list[dict[str, Any]]:
    """Detections, then the people only the multi-pose model found, then the garments of the best-scored
    people (each after its person's index), then the items of a flat-lay that the detector did not find.
    `side` runs the multi-pose pass beside the detector and the people's crops side by side."""
    from detector.crops import EarlyCrops
    from detector.flatlay import flat_lay_items
    from detector.garments import find_garments
    from detector.people import find_people
    from imgcore.foreground import foreground_parts

    # One foreground analysis per photo: whether the photo is a plain-background shot (no pose pass) and the
    # flat-lay's items both read it.
    foreground = once(lambda: foreground_parts(image))

    # The multi-pose keypoints are not used for garments: single-person MoveNet on each person's crop gives
    # better ones (bench/people.py, `own` against `parallel`). The detector's people are cropped while the
    # multi-pose pass still runs.
    early = EarlyCrops(pose, image, settings.pose.max_people, side) if pose is not None and side is not None else None
    try:
        detections, _ = find_people(
            detector,
            people,
            image,
            evidence_score=settings.people.evidence_score,
            alone_score=settings.people.alone_score if settings.people.alone_score < 1 else None,
            executor=side,
            on_detections=early.start if early is not None else None,
            plain=lambda: foreground().plain,
            gate_side=settings.people.gate_side or None,
        )
    except BaseException:
        if early is not None:
            early.cancel()
        raise
    items = [det.to_dict() for det in detections]
    if pose is not None:
        t0 = time.perf_counter()
        garments = find_garments(
            image,
            detections,
            pose,
            max_people=settings.pose.max_people,
            min_score=settings.pose.min_score,
            posed=early.keypoints(detections) if early is not None else None,
            executor=side,
            product_shot=foreground().plain,
        )
        STAGE_SECONDS.labels(stage="pose").observe(time.perf_counter() - t0)
        items.extend({**garment.to_dict(), "part_of": person} for person, garment in garments)
    t0 = time.perf_counter()
    items.extend(flat_lay_items(image, detections, parts=foreground()))
    STAGE_SECONDS.labels(stage="foreground").observe(time.perf_counter() - t0)
    return items


def readiness(
    detector: BackgroundLoader[Detector],
    pose: BackgroundLoader[PoseEstimator] | None,
    people: BackgroundLoader[MultiPoseEstimator] | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Ready when the detector and (when on) the pose models are loaded."""
    ready, details = detector.readiness()
    for name, loader in (("pose", pose), ("people", people)):
        if loader is not None:
            one_ready, one_details = loader.readiness()
            ready, details = ready and one_ready, {**details, name: one_details}
    return ready, details
