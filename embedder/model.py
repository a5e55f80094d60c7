"""The Embedder: an ONNX metric-learning model plus the preprocessing its card pins."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedder import transforms
from embedder.transforms import Box
from imgcore.card import MODEL_NAME, load_card, sha256_file
from imgcore.errors import ChecksumMismatch, InvalidInput, StoreError
from imgcore.runtime import ModelSession, OrtSession

DEFAULT_CROP_MARGIN = 0.05


class Embedder:
    """Turns an image, or boxes in it, into L2-normalised vectors.

    The card decides input size, resize interpolation, crop margin, dim and metric, so a model
    and its preprocessing can never drift apart. `preprocess` and `run` are public separately so
    a service can batch requests of several callers into one `run`.
    """

    def __init__(
        self,
        model_dir: Path,
        intra_threads: int = 1,
        inter_threads: int = 1,
        batch_size: int = 16,
        *,
        session: ModelSession | None = None,
        verify_sha256: bool = True,
        allow_spinning: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_dir = Path(model_dir)
        self._card = load_card(self.model_dir)
        model_path = self.model_dir / MODEL_NAME
        if verify_sha256 and session is None:
            # A model that is not the one its card describes would give silently wrong vectors.
            actual = sha256_file(model_path)
            if actual != self._card["sha256"]:
                raise ChecksumMismatch(f"{model_path}: sha256 {actual} != card {self._card['sha256']}")
        inp: dict[str, Any] = self._card.get("input", {})
        out: dict[str, Any] = self._card.get("output", {})
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
        self.batch_size = batch_size
        self._session: ModelSession = session or OrtSession(
            model_path, intra_threads, inter_threads, allow_spinning=allow_spinning
        )
        if self._input_name not in self._session.input_names:
            raise StoreError(f"model has no input {self._input_name!r} (has {self._session.input_names})")
        if self._output_name not in self._session.output_names:
            raise StoreError(f"model has no output {self._output_name!r}")
        self._output_index = self._session.output_names.index(self._output_name)

    # --- identity -------------------------------------------------------------------------------
    @property
    def card(self) -> dict[str, Any]:
        return dict(self._card)

    @property
    def name(self) -> str:
        return str(self._card["name"])

    @property
    def version(self) -> str:
        return str(self._card.get("version", "0"))

    @property
    def sha256(self) -> str:
        return str(self._card["sha256"])

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
        img = _checked_image(image)
        if box is not None:
            if not _valid(box):
                raise InvalidInput(f"invalid box {tuple(box)}: need finite x1 < x2, y1 < y2")
            try:
                clipped = transforms.clip_boxes([box], img.shape[1], img.shape[0])[0]
            except ValueError as exc:
                raise InvalidInput(str(exc)) from exc
            return transforms.prepare(img, clipped, self._size, self._margin, self._interpolation)
        # A whole image is padded to square as it is: no margin added around the frame.
        return transforms.prepare(img, None, self._size, 0.0, self._interpolation)

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
        out = np.concatenate(parts).astype(np.float32, copy=False)
        # The graph already normalises; doing it again costs nothing and protects the metric contract.
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    # --- convenience ------------------------------------------------------------------------------
    def embed(self, image: np.ndarray, boxes: Sequence[Box] | None = None) -> np.ndarray:
        """Vectors for the whole image ([1, dim]) or for each box ([len(boxes), dim])."""
        if boxes is None:
            return self.run(self.preprocess(image)[None])
        if len(boxes) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        return self.run(np.stack([self.preprocess(image, b) for b in boxes]))

    def embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Whole-image vectors for many images, [len(images), dim]; preprocessed one chunk at a time."""
        chunks = [
            self.run(np.stack([self.preprocess(im) for im in images[i : i + self.batch_size]]))
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
