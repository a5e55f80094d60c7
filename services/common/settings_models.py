"""The settings groups of the services that run an ONNX model (detector, embedder): the model, how it runs, and
the detector's pose model. Flat names (env, flags) are in services/common/settings_groups.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from services import defaults
from services.common.settings_groups import SettingsGroup, flat_prefix


def split_list(value: Any) -> Any:
    """Accept a JSON list or comma-separated text for list fields."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def model_uri_field(default: str) -> Any:
    """The `uri` field of a service's model group, whose default is that service's model."""
    return Field(default=default, description="Model folder URI (file://, s3://, http(s)://) with card.json.")


class ModelGroup(SettingsGroup):
    """Where the service's model comes from; `uri` has each service's own model as default."""

    model_config = flat_prefix("model_")

    uri: str
    sha256: str | None = Field(default=None, description="Pin: refuse a model whose sha256 differs.")
    cache_dir: Path = Field(
        default=defaults.DEFAULT_CACHE_DIR, description="Local cache of verified model folders (a persistent volume)."
    )
    mirrors: list[str] = Field(
        default_factory=list,
        description="Other model store base URIs tried in order when model_uri fails (air-gapped mirrors).",
    )
    retries: int = Field(default=3, ge=1, description="Attempts per model store URI before trying the next one.")

    _split_mirrors = field_validator("mirrors", mode="before")(split_list)


class DetectorModel(ModelGroup):
    uri: str = model_uri_field(defaults.DEFAULT_DETECTOR_URI)


class EmbedderModel(ModelGroup):
    uri: str = model_uri_field(defaults.DEFAULT_EMBEDDER_URI)


class RuntimeGroup(SettingsGroup):
    """How the model runs: onnxruntime's threads, the service's inference threads, the warm-up."""

    ort_intra_threads: int = Field(
        default=1, ge=1, description="onnxruntime intra-op threads (1: services share cores)."
    )
    ort_inter_threads: int = Field(default=1, ge=1, description="onnxruntime inter-op threads.")
    inference_threads: int = Field(
        default=1, ge=1, description="Worker threads running the model concurrently (the embedder's batches use one)."
    )
    warm_up: bool = Field(
        default=True,
        description="Run the model on a dummy input of every batch shape it serves before /readyz says ready "
        "(the first requests then skip onnxruntime's lazy initialisation).",
    )


class DetectorRuntime(RuntimeGroup):
    inference_threads: int = Field(
        default=2,
        ge=1,
        description="Photos detected at once, each run single-threaded (2: concurrent searches use two cores; "
        "bench/e2e.py measured +37 % throughput at 8 clients on 2 cores over 1).",
    )


class PoseGroup(SettingsGroup):
    """Shop the look (#15): garments of the detected people from a pose model ('' turns it off)."""

    model_config = flat_prefix("pose_")

    model_uri: str = Field(
        default=defaults.DEFAULT_POSE_URI, description="Pose model folder URI; empty: no garment regions."
    )
    model_sha256: str | None = Field(default=None, description="Pin: refuse a pose model whose sha256 differs.")
    max_people: int = Field(default=6, ge=1, description="Most people (best scored) whose garments are found.")
    min_score: float = Field(
        default=0.3, ge=0, le=1, description="Keypoint confidence a garment's body points need to be used."
    )


class PeopleGroup(SettingsGroup):
    """Every person in the photo (#29): the people a multi-person pose model finds beside the detector's ('' off)."""

    model_config = flat_prefix("people_")

    model_uri: str = Field(
        default=defaults.DEFAULT_PEOPLE_URI, description="Multi-pose model folder URI; empty: detector's people only."
    )
    model_sha256: str | None = Field(default=None, description="Pin: refuse a multi-pose model whose sha256 differs.")
    evidence_score: float = Field(
        default=0.07,
        ge=0,
        le=1,
        description="The pose pass runs only when the detector's outputs hold a person candidate scored at least this "
        "that is none of the people it found (a photo without people, or whose people it found all, pays nothing).",
    )
    alone_score: float = Field(
        default=0.4,
        ge=0,
        le=1,
        description="When the detector finds nothing at all in a scene (not a plain background), keep the pose "
        "model's people scored at least this (people the detector cannot see; such photos wait for the pose pass). "
        "1: off.",
    )
    gate_side: int = Field(
        default=192,
        ge=0,
        description="On a scene where the detector found other things and only a faint person candidate, a pose pass "
        "at this long side first (a third of the full pass's cost); nobody found, no full pass is waited for. 0: off.",
    )
    beside_max_inflight: int = Field(
        default=1,
        ge=0,
        description="While fewer photos than this are in the detector, the pose pass starts beside the detector and "
        "people are cropped side by side (idle cores: lower latency); beyond it, one step after the other and the pass "
        "only on person evidence (under load a pass that is then cancelled takes a core from other photos). 0: never.",
    )

    @field_validator("gate_side")
    @classmethod
    def _gate_side(cls, value: int) -> int:
        if 0 < value < 32:
            raise ValueError("gate_side is 0 (off) or a long side of at least 32 px")
        return value
