"""Greedy non-maximum suppression in numpy (no torchvision, no onnxruntime-extensions)."""

from __future__ import annotations

import numpy as np


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) xyxy box against (N, 4) xyxy boxes."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    # A degenerate (zero-area) pair has union 0: treat it as no overlap rather than divide by zero.
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Indices of the boxes kept, highest score first; a box is dropped if IoU > threshold with a kept one."""
    order = np.argsort(-scores, kind="stable")  # stable: equal scores keep input order, so tests are exact
    keep: list[int] = []
    while order.size > 0:
        best = int(order[0])
        keep.append(best)
        if max_keep is not None and len(keep) >= max_keep:
            break
        rest = order[1:]
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_keep: int | None = None,
) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Each class is shifted to its own far-away region of the plane so one greedy pass does all
    classes at once (a person box must not remove the handbag box inside it).
    """
    if boxes.shape[0] == 0:
        return np.zeros((0,), dtype=np.int64)
    span = float(boxes.max() - min(float(boxes.min()), 0.0)) + 1.0
    shifted = boxes + (class_ids.astype(np.float64) * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_keep)
