"""A flat-lay's separate items as detections of their own (detector/flatlay.py), on the sample photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from detector.flatlay import flat_lay_items
from detector.types import Detection
from tests.helpers.paths import DATA, REPO

FLAT_LAY = REPO / "services" / "static" / "samples" / "flat-lay.jpg"
BAG_AS_TOILET = Detection("toilet", None, 0.47, (470.2, 39.8, 582.9, 209.6))  # what NanoDet-m answers


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_every_item_of_a_flat_lay_is_found_and_a_mislabelled_one_keeps_the_detectors_box() -> None:
    items = flat_lay_items(_rgb(FLAT_LAY), [BAG_AS_TOILET])
    assert len(items) == 4
    assert all(item["label"] == "item" and item["source"] == "foreground" and item["score"] is None for item in items)
    assert [470.2, 39.8, 582.9, 209.6] in [item["box"] for item in items]


def test_an_item_the_detector_found_as_a_catalog_item_is_not_repeated() -> None:
    handbag = Detection("handbag", "Bag", 0.8, BAG_AS_TOILET.box)
    items = flat_lay_items(_rgb(FLAT_LAY), [handbag])
    assert len(items) == 3
    assert all(item["box"][0] < 460 or item["box"][1] > 280 for item in items)  # the bag is left to the detector


def test_a_photo_that_is_no_flat_lay_adds_nothing() -> None:
    assert flat_lay_items(_rgb(DATA / "photos" / "dog.jpg"), []) == []
