"""Flat-lays: the separate items of a photo on a plain background, as items of their own.

A T-shirt, trousers, a bag and a sneaker laid apart on a table are four items, whatever the detector makes of
them (COCO has no T-shirt; it saw the bag as a toilet). Each separate part of the foreground
(`imgcore.foreground.item_boxes`) becomes an item of no known kind, searched among all catalog categories,
unless the detector already found it as a catalog item or a person. Where the detector boxed it under another
label, its box is used: tighter than the mask's on soft edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detector.nms import box_iou
from detector.types import Detection
from imgcore.foreground import Parts
from imgcore.items import item_boxes

FLAT_LAY_LABEL = "item"
FLAT_LAY_SOURCE = "foreground"


def flat_lay_items(
    image: np.ndarray, detections: Sequence[Detection], match_iou: float = 0.5, parts: Parts | None = None
) -> list[dict[str, Any]]:
    """The flat-lay's items the detector did not find as catalog items or people, in the detector's answer
    format (`score` None: no model scored them; `source` "foreground"). [] on any other photo. `parts`: the
    photo's imgcore.foreground.foreground_parts when the caller has them already."""
    found = item_boxes(image, parts=parts)
    if not found:
        return []
    boxes = np.array([d.box for d in detections], dtype=np.float32).reshape(-1, 4)
    items = []
    for box in found:
        overlaps = box_iou(np.array(box, dtype=np.float32), boxes) if len(detections) else np.zeros(0)
        best = int(overlaps.argmax()) if overlaps.size else -1
        if best >= 0 and overlaps[best] >= match_iou:
            match = detections[best]
            if match.category is not None or match.label == "person":
                continue
            box = match.box
        items.append(
            {
                "label": FLAT_LAY_LABEL,
                "category": None,
                "score": None,
                "box": [round(float(v), 1) for v in box],
                "source": FLAT_LAY_SOURCE,
            }
        )
    return items
