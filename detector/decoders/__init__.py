"""Output decoders, picked by the card's `output.decoder`: "nanodet" or "yolo"."""

from __future__ import annotations

from typing import Any

from detector.decoders.base import Candidates, Decoder
from detector.decoders.nanodet import NanoDetDecoder
from detector.decoders.yolo import YoloDecoder
from imgcore.errors import StoreError

__all__ = ["Candidates", "Decoder", "NanoDetDecoder", "YoloDecoder", "make_decoder"]


def make_decoder(
    spec: dict[str, Any], *, input_hw: tuple[int, int], num_classes: int, output_names: list[str]
) -> Decoder:
    """Build the decoder a card's `output` section asks for; unknown kinds fail at load, not per request."""
    kind = spec.get("decoder")
    if kind == "nanodet":
        return NanoDetDecoder.from_card(spec, input_hw=input_hw, num_classes=num_classes)
    if kind == "yolo":
        return YoloDecoder.from_card(spec, input_hw=input_hw, num_classes=num_classes, output_names=output_names)
    raise StoreError(f"card output.decoder={kind!r} is not one of ['nanodet', 'yolo']")
