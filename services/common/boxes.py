"""Parsing and checking boxes from requests: (x1, y1, x2, y2) in pixels of the original image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from imgcore.errors import InvalidInput

Box = tuple[float, float, float, float]


def _as_box(value: Any) -> Box:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 4:
        raise InvalidInput("a box is four numbers x1,y1,x2,y2", reason="bad_box")
    try:
        x1, y1, x2, y2 = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("a box is four numbers x1,y1,x2,y2", reason="bad_box") from exc
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InvalidInput("box coordinates must be finite", reason="bad_box")
    return x1, y1, x2, y2


def parse_box_param(text: str) -> Box:
    """`x1,y1,x2,y2` (a query parameter)."""
    return _as_box(text.split(","))


def parse_boxes_json(text: str, max_boxes: int) -> list[Box]:
    """A JSON list of boxes `[[x1,y1,x2,y2], ...]`."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("boxes must be a JSON list of [x1,y1,x2,y2]", reason="bad_box") from exc
    if not isinstance(value, list):
        raise InvalidInput("boxes must be a JSON list of [x1,y1,x2,y2]", reason="bad_box")
    if len(value) > max_boxes:
        raise InvalidInput(f"at most {max_boxes} boxes per request", reason="bad_box")
    return [_as_box(v) for v in value]


def clip_box(box: Box, width: int, height: int) -> Box:
    """`box` clipped to the image; refuses a box with no area inside it."""
    x1, y1, x2, y2 = box
    cx1, cy1 = min(max(x1, 0.0), float(width)), min(max(y1, 0.0), float(height))
    cx2, cy2 = min(max(x2, 0.0), float(width)), min(max(y2, 0.0), float(height))
    if cx2 - cx1 < 1.0 or cy2 - cy1 < 1.0:
        raise InvalidInput(f"box {list(box)} has no area inside the {width}x{height} image", reason="bad_box")
    return cx1, cy1, cx2, cy2
