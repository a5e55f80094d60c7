"""The regions of a searched photo and the catalog hits as the public API shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote


def public_result(hit: dict[str, Any]) -> dict[str, Any]:
    """An index hit as the public API shows it (thumbnail through the gateway, no internal URIs)."""
    return {
        "item_id": hit["item_id"],
        "score": round(float(hit["score"]), 4),
        "category": hit["category"],
        "title": hit["title"],
        "image_url": f"/v1/items/{quote(str(hit['item_id']), safe='')}/image",
        "attrs": hit.get("attrs", {}),
        "product_id": hit.get("product_id") or hit["item_id"],
        "images": int(hit.get("images") or 1),
    }


@dataclass
class Region:
    """One searched region of the photo (box in original pixels) and, once queried, its similar items."""

    box: list[float]
    label: str | None = None
    category: str | None = None
    score: float | None = None
    source: str | None = None  # "user_box": the caller's own region; "foreground": an item of a flat-lay
    fallback: str | None = None  # "whole_image": nothing detected, the whole photo searched
    searched_category: str | list[str] | None = None  # a list: any of these categories (#15)
    results: list[dict[str, Any]] = field(default_factory=list)
    detection: int | None = None  # its index in the detector's answer
    part_of: int | None = None  # a garment: the detector's index of the person wearing it
    person: int | None = None  # a garment and its person: "Person 1", "Person 2", ... of the photo (#29)
    ignored: str | None = None  # why it was not searched (services/gateway/garments.py)

    def to_json(self) -> dict[str, Any]:
        """The region as an element of the response's `items` (`source`/`fallback` only when set)."""
        out: dict[str, Any] = {"label": self.label, "category": self.category, "score": self.score, "box": self.box}
        if self.source is not None:
            out["source"] = self.source
        if self.fallback is not None:
            out["fallback"] = self.fallback
        if self.person is not None:
            out["person"] = self.person
        out["searched_category"] = self.searched_category
        out["results"] = self.results
        return out
