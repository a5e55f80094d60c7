"""A flat-lay's items (imgcore/items.py): parts a faint middle connects are one item, parts apart are two."""

from __future__ import annotations

import numpy as np
import pytest

from imgcore.foreground import foreground_parts
from imgcore.image import decode_image
from imgcore.items import JOIN, item_boxes
from tests.helpers.paths import DATA


def _table(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.normal(232, 2, (240, 320, 3)), 0, 255).astype(np.uint8)


def test_two_parts_a_faint_middle_connects_are_one_item_and_apart_they_are_two() -> None:
    rng = np.random.default_rng(5)
    apart = _table(rng)
    apart[60:180, 40:100] = (70, 60, 60)  # two dark "sleeves", 120 px apart
    apart[60:180, 220:280] = (70, 60, 60)
    joined = apart.copy()
    joined[60:180, 100:220] = (214, 212, 212)  # the light body between them: 18 levels off the table
    assert len(item_boxes(apart)) == 2
    assert len(foreground_parts(joined).boxes) == 2  # the body alone is too faint to be foreground
    assert item_boxes(joined) == []  # ... but it makes the sleeves one item: the photo's foreground crop


@pytest.mark.parametrize("name", ["pullover-split.jpg", "dress-split.jpg"])
def test_a_demo_item_whose_light_middle_split_its_mask_is_one_item(name: str) -> None:
    photo = decode_image((DATA / "products" / name).read_bytes())
    parts = foreground_parts(photo)
    largest = parts.areas[0]
    assert sum(area >= 0.05 * largest for area in parts.areas) >= 2  # what used to make it a flat-lay
    joined = foreground_parts(photo, join=JOIN)
    assert sum(area >= 0.05 * joined.areas[0] for area in joined.areas) == 1
    assert item_boxes(photo) == [] and item_boxes(photo, parts=parts) == []
