"""Every person in a photo: the detector's people fused with the multi-pose model's.

The detector misses people the pose model finds (a person half turned away, a crouching one, one behind
another) and the pose model misses small people the detector finds, so both lists are kept: each posed
person is matched to the detected person it overlaps most (greedy, best IoU first); one that matches none
becomes a person of its own (`source` "pose"), after the detections. No person is listed twice, none is lost.
A detected person the pose model surely sees too (IoU >= 0.5) and whose posed box reaches well beyond the
detected one (by a tenth of its width or height) takes the union of both: the detector's box can end at a hip
where a kicking leg goes on, and the garments are read inside it. A few pixels more change nothing and keep
the box (and its early crop: detector.crops).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import replace

import numpy as np

from detector.detector import Detector
from detector.multipose import MultiPoseEstimator, PosedPerson
from detector.nms import box_iou
from detector.types import Box, Detection
from imgcore.foreground import box_union, plain_frame
from imgcore.runtime import RunCancel

PERSON = "person"
POSE_SOURCE = "pose"  # the `source` of a person only the multi-pose model found
MATCH_IOU = 0.3  # a posed person and a detected one overlapping this much are taken for one person
SAME_PERSON_IOU = 0.5  # a match this close is one person for sure
BEYOND = 0.1  # ... and a posed box past a side of the detected one by this share of its size widens it


def fuse_people(
    detections: Sequence[Detection], posed: Sequence[PosedPerson], *, match_iou: float = MATCH_IOU
) -> tuple[list[Detection], dict[int, np.ndarray]]:
    """(detections followed by a person for each posed person no detected person matches,
    {index of a person in that list: its multi-pose keypoints} for every posed person)."""
    people = [i for i, det in enumerate(detections) if det.label == PERSON]
    pairs: list[tuple[float, int, int]] = []
    if people and posed:
        boxes = np.array([p.box for p in posed], dtype=np.float64)
        for i in people:
            overlaps = box_iou(np.array(detections[i].box, dtype=np.float64), boxes)
            pairs.extend((float(overlaps[n]), i, n) for n in range(len(posed)))
    pairs.sort(key=lambda pair: -pair[0])
    keypoints: dict[int, np.ndarray] = {}
    matched: set[int] = set()
    fused = list(detections)
    for overlap, i, n in pairs:
        if overlap < match_iou:
            break
        if i not in keypoints and n not in matched:
            keypoints[i] = posed[n].points
            matched.add(n)
            if overlap >= SAME_PERSON_IOU and _reaches_beyond(posed[n].box, fused[i].box):
                fused[i] = replace(fused[i], box=box_union(fused[i].box, posed[n].box))
    category = next((det.category for det in detections if det.label == PERSON), None)
    for n, person in enumerate(posed):
        if n not in matched:
            keypoints[len(fused)] = person.points
            fused.append(Detection(PERSON, category, person.score, person.box, POSE_SOURCE))
    return fused, keypoints


def _reaches_beyond(outer: Box, box: Box) -> bool:
    """Whether `outer` goes past a side of `box` by more than BEYOND of the box's width or height."""
    dx, dy = BEYOND * (box[2] - box[0]), BEYOND * (box[3] - box[1])
    return outer[0] < box[0] - dx or outer[2] > box[2] + dx or outer[1] < box[1] - dy or outer[3] > box[3] + dy


class PendingPeople:
    """The multi-pose pass of one photo, running on an executor while the detector runs on the caller's thread:
    the photo's latency is the longer of the two, not their sum. The side thread first asks `plain()` (a
    product shot or flat-lay gets no pass), so the check costs the caller nothing. `cancel` stops the pass
    (its core is given back)."""

    def __init__(
        self, multipose: MultiPoseEstimator, image: np.ndarray, executor: Executor, plain: Callable[[], bool]
    ) -> None:
        self._stop = RunCancel()
        self._plain: Future[bool] = Future()
        self._future = executor.submit(self._run, multipose, image, plain)

    def _run(self, multipose: MultiPoseEstimator, image: np.ndarray, plain: Callable[[], bool]) -> list[PosedPerson]:
        try:
            is_plain = plain()
        except BaseException as exc:
            self._plain.set_exception(exc)
            raise
        self._plain.set_result(is_plain)
        if is_plain or self._stop.options.terminate:  # cancelled while the check ran: no run to stop
            return []
        return multipose.people(image, self._stop)

    def plain(self) -> bool:
        """Whether the photo's frame is a plain background (waits for the side thread's check)."""
        return self._plain.result()

    def result(self) -> list[PosedPerson]:
        return self._future.result()

    def cancel(self) -> None:
        if not self._future.cancel():  # already running: stop it inside onnxruntime
            self._stop.cancel()


def find_people(
    detector: Detector,
    multipose: MultiPoseEstimator | None,
    image: np.ndarray,
    *,
    evidence_score: float,
    alone_score: float | None = None,
    executor: Executor | None = None,
    on_detections: Callable[[list[Detection]], None] | None = None,
    plain: Callable[[], bool] | None = None,
    gate_side: int | None = None,
) -> tuple[list[Detection], dict[int, np.ndarray]]:
    """The detector's detections fused with the multi-pose model's people (see fuse_people).

    A product shot or flat-lay (the photo's frame is a plain background: imgcore.foreground.plain_frame) never runs
    the pose pass: people on a studio backdrop are the detector's to find (nothing around them hides them), and a
    pass beside the detector would take the core the photo's other work needs. Elsewhere the pass is used on person
    evidence: a person among the detector's candidates scored at least `evidence_score` (below its own threshold;
    the same model outputs, decoded a second time) that is none of the people it found (a photo of one clearly found
    person, and no other hint of one, pays nothing for the pass). Without it, a photo in which the detector finds
    something pays nothing for the pose model; a scene in which it finds nothing at all (people it cannot see: lit
    from behind, half-dressed in a cluttered room) keeps the posed people scored at least `alone_score` (None:
    none). With an `executor` the plain-frame check and then the pass start at once beside the detector, and the
    pass is cancelled when it is not used; without one they run after it.
    `on_detections` is called with the detector's detections as soon as they are known, before any wait for
    the pass (detector.crops.EarlyCrops starts there). `plain` says whether the photo's frame is a plain
    background, for a caller that analyses the foreground anyway (default: plain_frame of the image).
    `gate_side`: on a scene where the detector found other things and only a faint person (a candidate, none at
    its threshold), a pass at this smaller input first, on the caller's thread while the full pass runs beside;
    when it finds nobody the full pass is not waited for (a dog, a bicycle: no ~35 ms pass for nothing).
    """
    if multipose is None:
        return detector.detect(image), {}
    is_plain = plain if plain is not None else (lambda: plain_frame(image))
    pending = PendingPeople(multipose, image, executor, is_plain) if executor is not None else None
    try:
        tensor, geometry = detector.preprocess(image)
        outputs = detector.run(tensor)
        detections = detector.postprocess(outputs, geometry)
        if on_detections is not None:
            on_detections(detections)
        candidates = detector.postprocess(outputs, geometry, min(evidence_score, detector.score_threshold))
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise
    evidence = _unexplained_person(candidates, detections)
    wanted = evidence or (not detections and alone_score is not None)
    if (
        not wanted
        or (pending.plain() if pending is not None else is_plain())
        or _nobody_at_a_glance(multipose, image, detections, evidence, gate_side)
    ):
        if pending is not None:
            pending.cancel()
        return detections, {}
    posed = pending.result() if pending is not None else multipose.people(image)
    if not evidence:
        posed = [person for person in posed if person.score >= (alone_score or 0.0)]
    return fuse_people(detections, posed)


def _unexplained_person(candidates: Sequence[Detection], detections: Sequence[Detection]) -> bool:
    """Whether a person candidate is not one of the detected people: none overlaps a detected person by
    MATCH_IOU (a box the fusion would take for that person). People the detector found all, and every hint of
    a person theirs, leave the pose pass nothing to add."""
    found = [det.box for det in detections if det.label == PERSON]
    boxes = np.array(found, dtype=np.float64)
    return any(
        det.label == PERSON and (not found or box_iou(np.array(det.box, dtype=np.float64), boxes).max() < MATCH_IOU)
        for det in candidates
    )


def _nobody_at_a_glance(
    multipose: MultiPoseEstimator,
    image: np.ndarray,
    detections: Sequence[Detection],
    evidence: bool,
    gate_side: int | None,
) -> bool:
    """Whether a quick small pass finds nobody on a scene of other things with only a faint person candidate."""
    faint = evidence and bool(detections) and not any(det.label == PERSON for det in detections)
    return bool(gate_side) and faint and not multipose.people(image, long_side=gate_side)
