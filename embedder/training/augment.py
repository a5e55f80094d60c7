"""Shopper-photo augmentation that fits any catalog, from the catalog image alone. numpy/cv2 only.

A catalog shot is an item on a plain background. A shopper's photo of the same item has another background,
another scale and position, other light and colour, blur and JPEG artefacts, and is cropped by a detector or
the foreground box. `shop_photo` makes one: the item's matte is where the image differs from its border
colour, and it is composited at 35-90 % of a new frame on a tinted, lit, noisy background.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from embedder.transforms import border_colour, foreground_box, prepare, resize_square

CROP_MARGIN = 0.05  # embedder.model.DEFAULT_CROP_MARGIN: what the served crops get


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    return img if decoded is None else np.ascontiguousarray(decoded[:, :, ::-1])


def matte(img: np.ndarray) -> np.ndarray:
    """[H, W] float32 0..1: how much each pixel is item rather than background (its border's colour)."""
    diff = np.abs(img.astype(np.float32) - border_colour(img).astype(np.float32)).max(axis=2)
    alpha = np.clip((diff - 6.0) / 40.0, 0.0, 1.0)
    return np.asarray(cv2.GaussianBlur(alpha, (0, 0), 0.6), dtype=np.float32)


def colour_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and a colour cast, as another camera and light would give."""
    x = img.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.6, 1.4)  # saturation
    x = (x - x.mean()) * rng.uniform(0.75, 1.25) + x.mean() * rng.uniform(0.75, 1.2)  # contrast, brightness
    x = x * rng.uniform(0.85, 1.15, size=3) + rng.uniform(-15.0, 15.0, size=3)  # cast
    return np.clip(x, 0, 255).astype(np.uint8)


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A tinted, unevenly lit, noisy background: mostly light (walls, floors, tables), sometimes darker."""
    level = rng.uniform(170.0, 250.0) if rng.random() < 0.8 else rng.uniform(60.0, 170.0)
    base = level + rng.uniform(-20.0, 20.0, size=3)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    light = (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]) * rng.uniform(0.0, 25.0)
    canvas = base.astype(np.float32)[None, None, :] + light[:, :, None]
    canvas += rng.normal(0.0, rng.uniform(1.0, 6.0), size=canvas.shape).astype(np.float32)
    return canvas


def shop_photo(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """The catalog item as a shopper's photo: size x size RGB uint8, item at 35-90 % of the frame."""
    item_px = max(8, int(round(size * rng.uniform(0.35, 0.90))))
    item = cv2.resize(colour_jitter(img, rng), (item_px, item_px), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(matte(img), (item_px, item_px), interpolation=cv2.INTER_AREA)[:, :, None]
    canvas = background(size, rng)
    x0, y0 = (int(v) for v in rng.integers(0, size - item_px + 1, size=2))
    region = canvas[y0 : y0 + item_px, x0 : x0 + item_px]
    canvas[y0 : y0 + item_px, x0 : x0 + item_px] = region * (1.0 - alpha) + item.astype(np.float32) * alpha
    photo = np.clip(canvas, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        photo = np.asarray(cv2.GaussianBlur(photo, (0, 0), rng.uniform(0.4, 1.2) * size / 112.0), dtype=np.uint8)
    return photo


@dataclass(frozen=True)
class Jitter:
    """The small rotation, zoom and shift of a catalog view, so positions are not memorised."""

    degrees: float = 5.0
    zoom: tuple[float, float] = (0.85, 1.05)
    shift: float = 0.05  # at most this share of the side, each way


def catalog_view(img: np.ndarray, rng: np.random.Generator, jitter: Jitter = Jitter()) -> np.ndarray:
    """The catalog image rotated, zoomed and shifted a little; what falls in is its border colour."""
    size = img.shape[0]
    angle, scale = float(rng.uniform(-jitter.degrees, jitter.degrees)), float(rng.uniform(*jitter.zoom))
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    m[:, 2] += rng.uniform(-jitter.shift, jitter.shift, size=2) * size
    fill = tuple(int(v) for v in border_colour(img))
    return np.asarray(cv2.warpAffine(img, m, (size, size), borderValue=fill), dtype=np.uint8)


@dataclass(frozen=True)
class Look:
    """How the items of one data source become views. The default fits any catalog (items are its images);
    a data source that can render its items itself (Fashion-MNIST from its 28 x 28 originals) brings its own."""

    catalog: Callable[[np.ndarray, int], np.ndarray] = resize_square  # item, size -> its catalog image S x S x 3
    shop_photo: Callable[[np.ndarray, np.random.Generator, int], np.ndarray] = shop_photo  # item, rng, photo side
    jitter: Jitter = field(default_factory=Jitter)
    # Whole shop photos rendered at S, skipping the serving resize (cheaper); by default they are rendered at
    # S..2S like the cropped ones and resized as the gateway resizes a whole photo.
    whole_at_size: bool = False
    # Mirrored views; off when items are identities, for an item's mirror image can be another item.
    flip: bool = True


CATALOG_LOOK = Look()


def served_crop(photo: np.ndarray, size: int) -> np.ndarray:
    """What the gateway embeds when no detector box fits: the foreground box, else the whole photo."""
    box = foreground_box(photo)
    return prepare(photo, box, size, CROP_MARGIN if box is not None else 0.0).transpose(1, 2, 0).astype(np.uint8)


def train_view(
    item: np.ndarray,
    rng: np.random.Generator,
    p_catalog: float,
    p_crop: float,
    look: Look = CATALOG_LOOK,
    size: int = 0,
) -> np.ndarray:
    """One training sample of an item (S x S x 3; S defaults to the item's side): a catalog view, a
    foreground-cropped shop photo or a whole shop photo, JPEG'd and flipped at random."""
    size = size or item.shape[0]
    u = rng.random()
    if u < p_catalog:
        out = catalog_view(look.catalog(item, size), rng, look.jitter)
    else:
        crop = u < p_catalog + p_crop
        side = size if look.whole_at_size and not crop else int(rng.integers(size, 2 * size + 1))
        photo = look.shop_photo(item, rng, side)
        if rng.random() < 0.6:
            photo = jpeg(photo, int(rng.integers(35, 96)))
        if crop:
            out = served_crop(photo, size)
        else:
            out = prepare(photo, None, size, 0.0).transpose(1, 2, 0).astype(np.uint8)
    return np.ascontiguousarray(out[:, ::-1]) if look.flip and rng.random() < 0.5 else out


def query_photo(img: np.ndarray, seed: int, index: int) -> np.ndarray:
    """The validation query of one item: the same shop photo (JPEG q85, 2x the image size) in every run."""
    rng = np.random.default_rng([seed, index])
    return jpeg(shop_photo(img, rng, 2 * img.shape[0]), 85)
