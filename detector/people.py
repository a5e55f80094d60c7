"""Every person in a photo: the detector's people fused with the multi-pose model's.

The detector misses people the pose model finds (a person half turned away, a crouching one, one behind
another) and the pose model misses small people the detector finds, so both lists are kept: each posed
person is matched to the detected person it overlaps most (greedy, best IoU first); one that matches none
becomes a person of its own (`source` "pose"), after the detections. No person is listed twice, none is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.detector import Detector
from detector.multipose import MultiPoseEstimator, PosedPerson
from detector.nms import box_iou
from detector.types import Detection

PERSON = "person"
POSE_SOURCE = "pose"  # the `source` of a person only the multi-pose model found


def fuse_people(
    detections: Sequence[Detection], posed: Sequence[PosedPerson], *, match_iou: float = 0.3
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
    for overlap, i, n in pairs:
        if overlap < match_iou:
            break
        if i not in keypoints and n not in matched:
            keypoints[i] = posed[n].points
            matched.add(n)
    fused = list(detections)
    category = next((det.category for det in detections if det.label == PERSON), None)
    for n, person in enumerate(posed):
        if n not in matched:
            keypoints[len(fused)] = person.points
            fused.append(Detection(PERSON, category, person.score, person.box, POSE_SOURCE))
    return fused, keypoints


def find_people(
    detector: Detector, multipose: MultiPoseEstimator | None, image: np.ndarray, *, evidence_score: float
) -> tuple[list[Detection], dict[int, np.ndarray]]:
    """The detector's detections fused with the multi-pose model's people (see fuse_people).

    The pose pass runs only on person evidence: a person among the detector's candidates scored at least
    `evidence_score` (below its own threshold; the same model outputs, decoded a second time), so a photo
    the detector sees no person in at all pays nothing for the pose model.
    """
    tensor, geometry = detector.preprocess(image)
    outputs = detector.run(tensor)
    detections = detector.postprocess(outputs, geometry)
    if multipose is None:
        return detections, {}
    candidates = detector.postprocess(outputs, geometry, min(evidence_score, detector.score_threshold))
    if not any(det.label == PERSON for det in candidates):
        return detections, {}
    return fuse_people(detections, multipose.people(image))
