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
