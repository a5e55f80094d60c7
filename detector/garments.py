"""Garment regions of a person from body keypoints: top, bottom and footwear.

Each region is spanned by the keypoints that bound it on a body, and is returned only when those
keypoints are seen with confidence: a top needs both shoulders, a bottom a hip and a knee, footwear an
ankle. Margins are fractions of the person's own proportions (torso length, hip width, shin length), so
the boxes scale with the person, not with the photo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Protocol

import numpy as np

from detector.garment_evidence import bare_torso, bottom_end
from detector.nms import batched_nms
from detector.types import Box, Detection

FACE, SHOULDERS, ARMS, HIPS, KNEES, ANKLES = (0, 1, 2, 3, 4), (5, 6), (7, 8, 9, 10), (11, 12), (13, 14), (15, 16)
GARMENT_KINDS = ("top", "bottom", "footwear")
HIP_FLOOR = 0.5
FOOTWEAR_MARGINS = (0.35, 0.2, 0.4)  # of the shin: sideways, above and below the ankles
# On a product shot NanoDet calls a pullover, a coat, a dress or a boot a "person" (0.32-0.56 in 30 of the demo's
# 1,000 item queries), and its garments were searched instead of the item: 9 lost the item at rank 1. Such a
# "person" shows neither a face (best face keypoint <= 0.65) nor legs (two best knees/ankles <= 0.36), where 31
# of the 32 people the detector finds in tests/data show one or the other (`body_seen`; the 33rd "person" there,
# a phantom between two people, shows neither).
SURE_PERSON = 0.6
SEEN_FACE, SEEN_LEGS = 0.7, 0.45


class KeypointModel(Protocol):
    def keypoints(self, image: np.ndarray, box: Box) -> np.ndarray: ...


def _seen(points: np.ndarray, ids: Sequence[int], min_score: float) -> np.ndarray:
    """Rows (x, y, score) of the keypoints `ids` seen with at least `min_score`."""
    rows = points[list(ids)]
    return rows[rows[:, 2] >= min_score]


def _box(xs: np.ndarray, ys: np.ndarray, pad_x: float, top: float, bottom: float) -> Box:
    return float(xs.min() - pad_x), float(ys.min() - top), float(xs.max() + pad_x), float(ys.max() + bottom)


def _top(points: np.ndarray, person: Box, min_score: float, image: np.ndarray | None) -> tuple[Box, float] | None:
    shoulders, hips = _seen(points, SHOULDERS, min_score), _seen(points, HIPS, min_score)
    if len(shoulders) < 2:
        return None
    arms = _seen(points, ARMS, min_score)
    # A raised arm (elbow or wrist above the shoulders) is outside the top: it would stretch the box upwards.
    arms = arms[arms[:, 1] >= shoulders[:, 1].min()]
    width = abs(shoulders[0, 0] - shoulders[1, 0])
    # An upper-body photo cuts the hips off: the top then runs to the bottom of the person's box.
    lower = hips[:, 1].max() if len(hips) else person[3]
    if image is not None and bare_torso(image, shoulders, lower):
        return None
    torso = max(lower - shoulders[:, 1].mean(), width)
    used = np.concatenate([shoulders, arms, hips])
    xs, ys = used[:, 0], np.append(used[:, 1], lower)
    box = _box(xs, ys, 0.25 * width, 0.15 * torso, 0.1 * torso)
    return box, float(np.concatenate([shoulders, hips])[:, 2].mean())


def _bottom(points: np.ndarray, min_score: float, image: np.ndarray | None) -> tuple[Box, float] | None:
    hips, knees, ankles = (_seen(points, ids, min_score) for ids in (HIPS, KNEES, ANKLES))
    if not len(hips) or not len(knees):
        return None
    thigh = max(knees[:, 1].max() - hips[:, 1].min(), 1.0)
    width = max(abs(hips[0, 0] - hips[1, 0]), HIP_FLOOR * thigh) if len(hips) == 2 else 0.5 * thigh
    used = np.concatenate([hips, knees, ankles])
    # Without ankles, trousers still reach below the knee: extend by half a thigh.
    below = 0.05 * thigh if len(ankles) else 0.5 * thigh
    ends = bottom_end(image, points, min_score) if image is not None else None
    if ends:  # shorts or a skirt: the legs below where it ends are not the garment
        end = max(y for _, y in ends)
        used = np.concatenate([used[used[:, 1] <= end], [[x, y, 1.0] for x, y in ends]])
        below = 0.0
    box = _box(used[:, 0], used[:, 1], 0.4 * width, 0.1 * thigh, below)
    return box, float(np.concatenate([hips, knees])[:, 2].mean())


def _footwear(points: np.ndarray, person: Box, min_score: float) -> tuple[Box, float] | None:
    ankles, knees = _seen(points, ANKLES, min_score), _seen(points, KNEES, min_score)
    if not len(ankles):
        return None
    shin = knees[:, 1].mean() - ankles[:, 1].mean() if len(knees) else 0.0
    shin = abs(shin) if shin else 0.25 * (person[3] - person[1])
    pad, above, below = FOOTWEAR_MARGINS
    box = _box(ankles[:, 0], ankles[:, 1], pad * shin, above * shin, below * shin)
    return box, float(ankles[:, 2].mean())


def _clip(box: Box, width: int, height: int) -> Box:
    x1, y1, x2, y2 = box
    return max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)


def inside_person(points: np.ndarray, person: Box, margin: float = 0.15) -> np.ndarray:
    """The keypoints with those outside the person's box (grown by `margin`) scored 0: the pose model sees a
    square around the box and may describe a more prominent neighbour instead of a half-visible person."""
    x1, y1, x2, y2 = person
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    inside = (
        (points[:, 0] >= x1 - mx) & (points[:, 0] <= x2 + mx) & (points[:, 1] >= y1 - my) & (points[:, 1] <= y2 + my)
    )
    out = points.copy()
    out[~inside, 2] = 0.0
    return out


def garment_regions(
    points: np.ndarray,
    person: Box,
    image_size: tuple[int, int],
    *,
    min_score: float = 0.3,
    min_px: float = 8.0,
    image: np.ndarray | None = None,
) -> list[Detection]:
    """Top, bottom and footwear of one person whose keypoints are `points` ([17, 3]: x, y, score). With the
    `image` (HxWx3 RGB), its colours refine them (detector.garment_evidence): a bare torso has no top, a
    bottom ends where the legs' colour leaves it."""
    width, height = image_size
    found = {
        "top": _top(points, person, min_score, image),
        "bottom": _bottom(points, min_score, image),
        "footwear": _footwear(points, person, min_score),
    }
    out = []
    for kind in GARMENT_KINDS:
        region = found[kind]
        if region is None:
            continue
        box = _clip(region[0], width, height)
        if box[2] - box[0] >= min_px and box[3] - box[1] >= min_px:
            out.append(Detection(kind, None, round(region[1], 4), box))
    return out


def body_seen(person: Detection, points: np.ndarray) -> bool:
    """Whether a detected person is a body: scored sure by the detector, or its keypoints ([17, 3]) show a face
    or legs."""
    if person.score >= SURE_PERSON:
        return True
    legs = np.sort(points[list(KNEES + ANKLES), 2])[-2:].mean()
    return bool(points[list(FACE), 2].max() >= SEEN_FACE or legs >= SEEN_LEGS)


def garment_people(detections: Sequence[Detection], max_people: int) -> list[int]:
    """Indexes of the people whose garments are found: the first `max_people` persons in `detections`."""
    return [i for i, det in enumerate(detections) if det.label == "person"][:max_people]


def find_garments(
    image: np.ndarray,
    detections: Sequence[Detection],
    pose: KeypointModel,
    *,
    max_people: int,
    min_score: float,
    dedupe_iou: float = 0.5,
    posed: Mapping[int, np.ndarray] | None = None,
    executor: Executor | None = None,
    refine: bool = True,
    product_shot: bool = False,
) -> list[tuple[int, Detection]]:
    """(index of the person in `detections`, garment) for the `max_people` best-scored people; a person in
    `posed` (index -> keypoints already found: a multi-pose model's, or detector.crops.EarlyCrops') is not
    cropped again for the single-person model.
    With an `executor` the people's crops run on it side by side (each crop is one single-threaded run).
    `refine`: the photo's colours refine the regions (see garment_regions); False: keypoints only.
    `product_shot` (a plain background): a person must be `body_seen`, else it is the item itself and gets none.

    Two person boxes on one body (the detector's NMS keeps boxes overlapping up to its IoU threshold) give
    the same garments twice: of same-kind garments overlapping by more than `dedupe_iou`, the best stays.
    """
    people = garment_people(detections, max_people)
    size = (int(image.shape[1]), int(image.shape[0]))
    given = posed if posed is not None else {}
    crops = [i for i in people if i not in given]

    def crop(i: int) -> np.ndarray:
        return pose.keypoints(image, detections[i].box)

    runner = executor.map if executor is not None and len(crops) > 1 else map
    cropped = dict(zip(crops, runner(crop, crops), strict=True))
    found: list[tuple[int, Detection]] = []
    for i in people:
        points = inside_person(given[i] if i in given else cropped[i], detections[i].box)
        if product_shot and not body_seen(detections[i], points):
            continue
        found.extend(
            (i, garment)
            for garment in garment_regions(
                points, detections[i].box, size, min_score=min_score, image=image if refine else None
            )
        )
    if len(found) < 2:
        return found
    boxes = np.array([garment.box for _, garment in found], dtype=np.float64)
    scores = np.array([garment.score for _, garment in found], dtype=np.float64)
    kinds = np.array([GARMENT_KINDS.index(garment.label) for _, garment in found])
    keep = set(batched_nms(boxes, scores, kinds, dedupe_iou).tolist())
    return [pair for n, pair in enumerate(found) if n in keep]
