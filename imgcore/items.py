"""The separate items of a flat-lay: the parts of the foreground (imgcore.foreground) that lie apart.

A T-shirt, trousers, a bag and a sneaker laid apart on a table are four items; a light pullover whose faint
body leaves its sleeves and hem apart in the mask is one.
"""

from __future__ import annotations

import numpy as np

from imgcore.foreground import Box, Parts, box_union, foreground_parts

# Parts are one item when pixels a quarter as far from the background as the threshold asks connect them: too
# faint to be an item, they are a light garment's body between its darker sleeves and hem (a single item on a
# light background split into 2-3 "items" in 10 of the demo's 1,000 item queries; joined, 3). Items laid apart
# on a table have background between them.
JOIN = 0.25


def _near(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: float) -> bool:
    return a[0] - gap < b[2] and b[0] - gap < a[2] and a[1] - gap < b[3] and b[1] - gap < a[3]


def _merge_near(parts: Parts, gap: float) -> list[tuple[tuple[int, int, int, int], int]]:
    """Parts closer than `gap` px merged (a bag and its handle, a logo inside a shirt): (box, area) each."""
    merged = list(zip(parts.boxes, parts.areas, strict=True))[:64]  # largest first: specks beyond do not matter
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                (a, area_a), (b, area_b) = merged[i], merged[j]
                if _near(a, b, gap):
                    merged[i] = (box_union(a, b), area_a + area_b)
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return sorted(merged, key=lambda m: -m[1])


def item_boxes(
    image: np.ndarray,
    max_items: int = 8,
    min_share: float = 0.05,
    min_item: float = 0.002,
    parts: Parts | None = None,
) -> list[Box]:
    """Boxes of the separate items of a flat-lay (items apart on a plain background), largest first.

    Parts that faint pixels connect (`JOIN`) or within 3 % of the shorter side of each other are one item (the
    faint pixels are looked at only when the parts alone make two items or more); an item must cover `min_item` of the
    photo and `min_share` of the largest item's pixels. Fewer than two items: [] (one item on a plain
    background is the whole photo's foreground, `foreground_box`). `parts`: the photo's foreground_parts when
    the caller has them already.
    """
    h, w = image.shape[:2]

    def items(found: Parts) -> list[tuple[int, int, int, int]]:
        merged = _merge_near(found, 0.03 * min(h, w))
        largest = merged[0][1] if merged else 0
        return [box for box, area in merged if area >= min_item * h * w and area >= min_share * largest]

    kept = items(foreground_parts(image) if parts is None else parts)
    if len(kept) >= 2:  # one item whose faint middle split it, or items apart: only then the second analysis
        kept = items(foreground_parts(image, join=JOIN))
    if len(kept) < 2:
        return []
    return [(float(x1), float(y1), float(x2), float(y2)) for x1, y1, x2, y2 in kept[:max_items]]
