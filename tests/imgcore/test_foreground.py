"""The foreground analysis (imgcore/foreground.py) on real photos, product photos and a flat-lay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcore.fmnist import render_catalog, render_shop_photo
from imgcore.foreground import foreground_box, foreground_parts, frame_median, frame_pixels
from imgcore.items import item_boxes
from tests.helpers.paths import DATA, REPO

FULL_FRAME = sorted((DATA / "photos").rglob("*.jpg"))
FLAT_LAY = REPO / "services" / "static" / "samples" / "flat-lay.jpg"
# Where the sample's items lie (x1, y1, x2, y2), measured by eye on the 640x420 file.
FLAT_LAY_ITEMS = {
    "T-shirt": (60, 45, 205, 230),
    "trousers": (330, 30, 410, 245),
    "bag": (475, 50, 580, 205),
    "sneaker": (480, 295, 615, 345),
}


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _contains(box: tuple[float, float, float, float], inner: tuple[int, int, int, int]) -> bool:
    return box[0] <= inner[0] and box[1] <= inner[1] and box[2] >= inner[2] and box[3] >= inner[3]


@pytest.mark.parametrize("path", FULL_FRAME, ids=lambda p: p.name)
def test_a_full_frame_photo_has_no_background_so_the_whole_photo_is_its_crop(path: Path) -> None:
    photo = _rgb(path)
    assert not foreground_parts(photo).plain
    assert foreground_box(photo) is None
    assert item_boxes(photo) == []


def test_a_speck_on_a_plain_background_is_never_cropped_smaller_than_a_quarter_of_the_photo() -> None:
    rng = np.random.default_rng(3)
    photo = np.clip(rng.normal(228, 3, (300, 400, 3)), 0, 255).astype(np.uint8)
    photo[140:152, 200:212] = (40, 30, 30)  # 12 px: enough to count, far too small to be the crop
    box = foreground_box(photo)
    assert box is not None
    assert box[2] - box[0] >= 0.25 * 300 - 1 and box[3] - box[1] >= 0.25 * 300 - 1
    assert _contains(box, (200, 140, 212, 152))


def test_product_and_catalog_photos_keep_their_foreground_crop() -> None:
    images = np.load(DATA / "emb_fmnist_test_sample.npz")["images"]
    rng = np.random.default_rng(5)
    for img28 in images:
        shop = render_shop_photo(img28, rng, 224)
        assert foreground_parts(shop).plain and foreground_box(shop) is not None
        assert foreground_parts(render_catalog(img28)).plain  # items touching the frame leave it a background


def test_a_flat_lay_gives_one_box_per_item_and_one_item_gives_none() -> None:
    boxes = item_boxes(_rgb(FLAT_LAY))
    assert len(boxes) == len(FLAT_LAY_ITEMS), boxes
    for name, where in FLAT_LAY_ITEMS.items():
        holding = [box for box in boxes if _contains(box, where)]
        assert len(holding) == 1, (name, boxes)
        x1, y1, x2, y2 = holding[0]
        assert (x2 - x1) * (y2 - y1) <= 1.5 * (where[2] - where[0]) * (where[3] - where[1]), (name, holding)
    shop = render_shop_photo(np.load(DATA / "emb_fmnist_test_sample.npz")["images"][0], np.random.default_rng(1))
    assert item_boxes(shop) == []  # a lone item is the whole photo's foreground crop


@pytest.mark.parametrize("shape", [(112, 112, 3), (97, 150, 3), (31, 8, 3), (5, 5, 1)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_frame_median_is_numpys_median_of_the_frame(shape: tuple[int, int, int], dtype: type) -> None:
    # By one partition instead of np.median; the values must be the same, odd and even frame sizes alike.
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, shape).astype(dtype)
    if dtype == np.float32:
        image += rng.random(shape, dtype=np.float32)
    got = frame_median(image)
    want = np.median(frame_pixels(image), axis=0)
    assert got.shape == (shape[2],)
    np.testing.assert_array_equal(got, want.astype(np.float32))
