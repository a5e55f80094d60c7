"""The Embedder: an ONNX metric-learning model plus the preprocessing its card pins."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from embedder import transforms
from embedder.transforms import Box
from imgcore.errors import InvalidInput, StoreError
from imgcore.onnx_model import OnnxModel, RuntimeOptions
from imgcore.runtime import ModelSession
from imgcore.vectors import l2_normalise

DEFAULT_CROP_MARGIN = 0.05


class Embedder(OnnxModel):
    """Turns an image, or boxes in it, into L2-normalised vectors.

    The card decides input size, resize interpolation, crop margin, dim and metric, so a model
    and its preprocessing can never drift apart. `preprocess` and `run` are public separately so
    a service can batch requests of several callers into one `run`. `runtime` options (threads,
    spinning, a fake session, skipping the checksum) are OnnxModel's.
    """

    # Index manifests have recorded "0" for an embedder card without a version; keep them comparable.
    default_version = "0"

    def __init__(self, model_dir: Path, *, batch_size: int = 16, **runtime: Unpack[RuntimeOptions]) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size
        super().__init__(model_dir, **runtime)

    def _read_card(self, card: dict[str, Any]) -> None:
        inp: dict[str, Any] = card.get("input", {})
        out: dict[str, Any] = card.get("output", {})
        try:
            self._size = int(inp["size"][0])
            self._dim = int(out["dim"])
            self._input_name = str(inp.get("name", "image"))
            self._output_name = str(out.get("name", "embedding"))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise StoreError(f"model card in {self.model_dir} lacks input.size/output.dim: {exc}") from exc
        self._interpolation = str(inp.get("resize", "area"))
        if self._interpolation not in transforms.INTERPOLATIONS:
            raise StoreError(f"unknown resize interpolation in card: {self._interpolation!r}")
        self._margin = float(inp.get("crop_margin", DEFAULT_CROP_MARGIN))
        self._metric = str(out.get("metric", "angular"))

    def _bind(self, session: ModelSession) -> None:
        self._require("input", self._input_name, session.input_names)
        self._require("output", self._output_name, session.output_names)
        self._output_index = session.output_names.index(self._output_name)

    # --- identity beyond OnnxModel's --------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def input_size(self) -> int:
        return self._size

    # --- the two halves, for services that batch across requests ---------------------------------
    def preprocess(self, image: np.ndarray, box: Box | None = None) -> np.ndarray:
        """One image (or one box of it) -> [3, H, W] float32, values 0..255."""
        return transforms.to_chw(self.preprocess_pixels(image, box))

    def foreground_box(self, image: np.ndarray) -> Box | None:
        """Where the item lies in a photo of one item on a plain background (`transforms.foreground_box`)."""
        return transforms.foreground_box(image)

    def whole_image_pixels(self, image: np.ndarray, foreground: bool) -> tuple[np.ndarray, Box | None]:
        """A whole image -> (the model's pixels, the box they were cropped to, None for the whole image).

        The one preprocessing of a whole image: the search path (the embedder service asked for no boxes) and
        the rebuild (ann_index.build.decode_pool) both call it, so a catalog image searched as it is gives the
        vector the index holds for it. With `foreground`, cropped to `foreground_box` when it finds one.
        """
        img = _checked_image(image)
        box = self.foreground_box(img) if foreground else None
        return self.preprocess_pixels(img, box), box

    def preprocess_pixels(self, image: np.ndarray, box: Box | None = None) -> np.ndarray:
        """One image (or one box of it) -> the model's H x W x 3 uint8 pixels; `transforms.chw_batch` of
        several is what `run` takes (a quarter of the bytes to hand between threads, one conversion)."""
        img = _checked_image(image)
        if box is not None:
            if not _valid(box):
                raise InvalidInput(f"invalid box {tuple(box)}: need finite x1 < x2, y1 < y2")
            try:
                clipped = transforms.clip_boxes([box], img.shape[1], img.shape[0])[0]
            except ValueError as exc:
                raise InvalidInput(str(exc)) from exc
            return transforms.prepare_pixels(img, clipped, self._size, self._margin, self._interpolation)
        # A whole image is padded to square as it is: no margin added around the frame.
        return transforms.prepare_pixels(img, None, self._size, 0.0, self._interpolation)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """[B, 3, H, W] float32 -> [B, dim] float32 unit vectors, in chunks of batch_size."""
        expected = (3, self._size, self._size)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise InvalidInput(f"batch must be [B, {expected[0]}, {expected[1]}, {expected[2]}], got {batch.shape}")
        if batch.shape[0] == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        x = np.ascontiguousarray(batch, dtype=np.float32)
        parts = [
            self._session.run({self._input_name: x[i : i + self.batch_size]})[self._output_index]
            for i in range(0, x.shape[0], self.batch_size)
        ]
        # The graph already normalises; doing it again costs nothing and protects the metric contract.
        return l2_normalise(np.concatenate(parts))

    def warm_up(self) -> int:
        """One run of each batch size 1..batch_size: a micro-batching service runs any of them."""
        for size in range(1, self.batch_size + 1):
            self.run(np.full((size, 3, self._size, self._size), 127.0, dtype=np.float32))
        return self.batch_size

    # --- convenience ------------------------------------------------------------------------------
    def embed(self, image: np.ndarray, boxes: Sequence[Box] | None = None) -> np.ndarray:
        """Vectors for the whole image ([1, dim]) or for each box ([len(boxes), dim])."""
        if boxes is None:
            return self.run(self.preprocess(image)[None])
        if len(boxes) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        return self.run(transforms.chw_batch([self.preprocess_pixels(image, b) for b in boxes]))

    def embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Whole-image vectors for many images, [len(images), dim]; preprocessed one chunk at a time."""
        chunks = [
            self.run(transforms.chw_batch([self.preprocess_pixels(im) for im in images[i : i + self.batch_size]]))
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self._dim), dtype=np.float32)


def _checked_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InvalidInput("image must be a numpy array")
    if image.ndim < 2 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInput(f"image has no pixels: shape {getattr(image, 'shape', None)}")
    try:
        return transforms.as_rgb(image)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def _valid(box: Sequence[float]) -> bool:
    return len(box) == 4 and all(np.isfinite(v) for v in box) and box[2] > box[0] and box[3] > box[1]
