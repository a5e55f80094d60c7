"""The result type every detector returns, whatever model produced it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One object: `box` is (x1, y1, x2, y2) in pixels of the ORIGINAL image, already clipped to it.

    `category` is the catalog category the label maps to, or None for "search all categories"
    (a person, a tie: things the catalog has no category for).
    """

    label: str
    category: str | None
    score: float
    box: Box
    source: str | None = None  # set when another model than the detector found it ("pose": detector/people.py)

    def to_dict(self) -> dict[str, Any]:
        # Rounded for JSON: sub-pixel and 5th-decimal digits are noise, not information.
        out: dict[str, Any] = {
            "label": self.label,
            "category": self.category,
            "score": round(self.score, 4),
            "box": [round(v, 1) for v in self.box],
        }
        if self.source is not None:
            out["source"] = self.source
        return out
