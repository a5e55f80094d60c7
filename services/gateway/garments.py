"""Which detected items the gateway searches, and among which catalog categories (#15, shop the look).

The served index says which catalog categories each kind of item belongs to (the catalog's kinds.json,
carried in its manifest). An item is searched among its kind's categories; an item whose kind maps to none
(a person, a vase) is not searched but listed as ignored. A person whose garments were found is never
searched itself: its top, bottom and footwear are. Without a kinds mapping (an index built before it) the
old rule stays: an item's own catalog category when the index has it, else all categories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.gateway.regions import Region

CategorySpec = str | list[str] | None  # one category, any of several, or all (the index's wire format)
FOREGROUND = "foreground"  # the `source` of a flat-lay's items in the detector's answer (detector/flatlay.py)


def _kindless(region: Region) -> bool:
    """The caller's own box or a flat-lay's item: no detector label to look up, searched among all categories
    (or the caller's)."""
    return region.label is None or region.source == FOREGROUND


def _choose(region: Region, kinds: Mapping[str, Sequence[str]], known: frozenset[str], category: str | None) -> None:
    """Sets the region's `searched_category` from its kind, or `ignored` with the reason. With the caller's
    `category`, only items whose kind includes it are searched (in it alone)."""
    allowed = [c for c in kinds.get(region.label or "", ()) if c in known]
    if not allowed:
        region.ignored = "not_a_catalog_kind"
    elif category is None:
        region.searched_category = allowed[0] if len(allowed) == 1 else allowed
    elif category in allowed:
        region.searched_category = category
    else:
        region.ignored = "other_category"


def split_items(
    regions: Sequence[Region], kinds: Mapping[str, Sequence[str]] | None, known: frozenset[str], category: str | None
) -> tuple[list[Region], list[Region]]:
    """(searched, ignored) regions, each searched one's `searched_category` set where its kind decides it.

    The caller's `category` applies to the items that can be of it: the caller's box, the whole photo, a
    flat-lay's items and detected items whose kind includes it; the others are ignored (`other_category`).
    Without a kinds mapping, every item is searched in it. The people whose garments were found are numbered
    1, 2, ... in the detector's order (its own people best first, then those only the pose model found); each
    garment and its person carry that number (`person`)."""
    covered = {region.part_of for region in regions if region.part_of is not None}
    number = {detection: n for n, detection in enumerate(sorted(covered), start=1)}
    searched: list[Region] = []
    ignored: list[Region] = []
    for region in regions:
        owner = region.part_of if region.part_of is not None else region.detection
        region.person = number.get(owner) if owner is not None else None
        if region.label == "person" and region.detection is not None and region.detection in covered:
            region.ignored = "garments_searched"
        elif kinds is not None and not _kindless(region):
            _choose(region, kinds, known, category)
        (ignored if region.ignored else searched).append(region)
    return searched, ignored


def categories_for(regions: Sequence[Region], known: frozenset[str], category: str | None) -> list[CategorySpec]:
    """The category spec each region is queried with: the caller's, its kind's, or (no kinds mapping) its own
    catalog category when the index knows it, else all."""
    if category is not None:
        return [category] * len(regions)
    return [
        region.searched_category
        if region.searched_category is not None
        else (region.category if region.category in known else None)
        for region in regions
    ]


def ignored_json(region: Region) -> dict[str, Any]:
    """An ignored item as the response lists it: what it was, where, why it was not searched, and for a person
    whose garments were searched, their number (`person`, as on the garments)."""
    out = {"label": region.label, "score": region.score, "box": region.box, "why": region.ignored}
    if region.person is not None:
        out["person"] = region.person
    return out
