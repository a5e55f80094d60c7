"""How far two detectors agree on one photo: the check that keeps a quantised detector honest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector.nms import box_iou
from detector.types import Detection

MATCH_IOU = 0.5


@dataclass(frozen=True)
class Agreement:
    """Detections of a reference and a candidate, paired greedily by score: same label, IoU >= MATCH_IOU."""

    pairs: list[tuple[Detection, Detection, float]]  # (reference, candidate, IoU)
    only_reference: list[Detection]
    only_candidate: list[Detection]

    @property
    def matched(self) -> int:
        return len(self.pairs)

    @property
    def total(self) -> int:
        """Objects either model found: matched pairs once, plus the unmatched of both."""
        return self.matched + len(self.only_reference) + len(self.only_candidate)


def agreement(reference: Sequence[Detection], candidate: Sequence[Detection], min_iou: float = MATCH_IOU) -> Agreement:
    """Pair each reference detection (best score first) with the best-overlapping unused candidate of its label."""
    free = list(candidate)
    pairs: list[tuple[Detection, Detection, float]] = []
    alone: list[Detection] = []
    for ref in sorted(reference, key=lambda d: -d.score):
        same = [c for c in free if c.label == ref.label]
        if not same:
            alone.append(ref)
            continue
        ious = box_iou(np.asarray(ref.box), np.asarray([c.box for c in same]))
        best = int(np.argmax(ious))
        if ious[best] < min_iou:
            alone.append(ref)
            continue
        pairs.append((ref, same[best], float(ious[best])))
        free.remove(same[best])
    return Agreement(pairs, alone, free)


def in_ignored(box: Sequence[float], ignore: Sequence[Sequence[float]]) -> bool:
    """Half or more of `box` lies in one ignore box: it counts neither way."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    for x1, y1, x2, y2 in ignore:
        w, h = min(box[2], x2) - max(box[0], x1), min(box[3], y2) - max(box[1], y1)
        if w > 0 and h > 0 and w * h >= 0.5 * area:
            return True
    return False


def correct(
    found: Sequence[Detection], truth: Sequence[tuple[str, Sequence[float]]], ignore: Sequence[Sequence[float]] = ()
) -> list[Detection]:
    """The detections that are a labelled object (same label, IoU >= MATCH_IOU; one each, best overlaps first),
    leaving out those mostly inside an `ignore` box (people too small or hidden to label)."""
    pairs = []
    for i, det in enumerate(found):
        for j, (label, box) in enumerate(truth):
            iou = float(box_iou(np.asarray(box, dtype=np.float64), np.asarray([det.box]))[0])
            if label == det.label and iou >= MATCH_IOU and not in_ignored(det.box, ignore):
                pairs.append((iou, i, j))
    used_d: set[int] = set()
    used_t: set[int] = set()
    for _, i, j in sorted(pairs, reverse=True):
        if i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
    return [found[i] for i in sorted(used_d)]
