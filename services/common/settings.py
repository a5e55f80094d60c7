"""Settings of the four services: one pydantic-settings class each, read from the environment.

Every field can be set by an environment variable `<PREFIX><FIELD NAME IN CAPITALS>` (e.g.
`IMGSEARCH_EMBEDDER_MAX_BATCH_SIZE=32`) and by a flag of `imgsearch serve NAME` (`--max-batch-size 32`);
flags override the environment. List fields accept JSON or comma-separated text. The admin token is
the one exception: it is read only from `IMGSEARCH_ADMIN_TOKEN` (never a flag, never logged).

The Kubernetes ConfigMap is generated from these classes: keep field names stable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from imgcore.image import DecodeLimits
from services import defaults
from services.common.settings_ops import QueryLogFields, ShadowFields
from services.common.settings_workers import IndexWorkerFields

ADMIN_TOKEN_ENV = "IMGSEARCH_ADMIN_TOKEN"
ADMIN_TOKEN_MIN_CHARS = 24
# Stand-ins people commit or paste instead of a token ("REPLACE_ME", "changeme", "<token>", "example").
_PLACEHOLDER_MARKS = ("replace", "changeme", "change-me", "change_me", "placeholder", "example", "todo", "xxx", "<")


def _split_list(value: Any) -> Any:
    """Accept a JSON list or comma-separated text for list fields."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _empty_none(value: Any) -> Any:
    """An empty environment value (a ConfigMap key left blank) means unset."""
    return None if value == "" else value


def admin_token_problem(token: str) -> str | None:
    """Why a given admin token must not be used (a placeholder, too short), or None when it may."""
    lowered = token.lower()
    if any(mark in lowered for mark in _PLACEHOLDER_MARKS):
        return "a placeholder value"
    if len(token) < ADMIN_TOKEN_MIN_CHARS:
        return f"shorter than {ADMIN_TOKEN_MIN_CHARS} characters"
    return None


def _port(default: int) -> Any:
    """The `port` field: every service has its own default, so the four run side by side on one host."""
    return Field(default=default, ge=0, le=65535, description="TCP port to listen on.")


def _model_uri(default: str) -> Any:
    """The `model_uri` field of a model service, whose default is that service's model."""
    return Field(default=default, description="Model folder URI (file://, s3://, http(s)://) with card.json.")


def _decode_memory_mib(default: int) -> Any:
    """The `decode_memory_mib` field, whose default is what the service's pod can spare (k8s/base)."""
    return Field(
        default=default,
        ge=1,
        description="Memory the image decodes in flight may hold together (MiB); each first reserves its peak, "
        "planned from the image header. In k8s 7/16 of the container's memory limit.",
    )


class CommonSettings(BaseSettings):
    """Fields every service has."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True, populate_by_name=True)

    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0 in a container).")
    port: int = _port(8000)
    log_level: str = Field(default="INFO", description="Python logging level: DEBUG, INFO, WARNING or ERROR.")
    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024, gt=0, description="Largest accepted request body; refused while streaming (413)."
    )
    max_pixels: int = Field(default=40_000_000, gt=0, description="Largest accepted image in pixels (bombs: 413).")
    max_side: int = Field(default=20_000, gt=0, description="Largest accepted image width or height in pixels.")
    graceful_shutdown_s: float = Field(
        default=10.0, ge=0, description="On SIGTERM, how long in-flight requests may take before the process exits."
    )
    nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="Raise the niceness of every thread of this process at start: services sharing a host's cores "
        "yield to the others (the local stack's embedder yields to the detector); pods use CPU requests instead.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(ADMIN_TOKEN_ENV),
        description=(
            "Bearer token for /admin endpoints, only from env IMGSEARCH_ADMIN_TOKEN; unset, a placeholder or"
            f" under {ADMIN_TOKEN_MIN_CHARS} characters: admin off."
        ),
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Headers must arrive within this of a request's first byte (408) or of connecting.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A request's whole body must arrive within this of its headers, else 408 (20 MiB: 5.6 Mbit/s).",
    )
    max_client_connections: int = Field(
        default=512,
        ge=1,
        description="Open client connections served at once; past it 503 (GET /livez, /readyz, /metrics excepted).",
    )

    def decode_limits(self) -> DecodeLimits:
        """The image decoder limits these settings describe."""
        return DecodeLimits(max_bytes=self.max_upload_bytes, max_pixels=self.max_pixels, max_side=self.max_side)


class StoreSettings(CommonSettings):
    """Fields of the services that read a model or index store (not the gateway: it reads none)."""

    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint for s3:// URIs (else boto3's AWS_ENDPOINT_URL or AWS)."
    )
    store_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one model/index store request.")


class DecodingSettings(CommonSettings):
    """Fields of the services that decode uploaded images (detector, embedder, gateway)."""

    decode_memory_mib: int = _decode_memory_mib(672)
    decode_wait_s: float = Field(
        default=10.0, ge=0, description="How long an upload waits for decode memory before it gets 503."
    )


class ModelServiceSettings(StoreSettings, DecodingSettings):
    """Fields of the services that run an ONNX model (detector, embedder)."""

    model_cache_dir: Path = Field(
        default=defaults.DEFAULT_CACHE_DIR, description="Local cache of verified model folders (a persistent volume)."
    )
    model_mirrors: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Other model store base URIs tried in order when model_uri fails (air-gapped mirrors).",
    )
    model_retries: int = Field(default=3, ge=1, description="Attempts per model store URI before trying the next one.")
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
    model_uri: str  # each service's own model: `_model_uri(default)` in its class
    model_sha256: str | None = Field(default=None, description="Pin: refuse a model whose sha256 differs.")

    _split_mirrors = field_validator("model_mirrors", mode="before")(_split_list)


class DetectorSettings(ModelServiceSettings):
    """`imgsearch serve detector`: finds items in a photo."""

    model_config = SettingsConfigDict(env_prefix="IMGSEARCH_DETECTOR_")

    port: int = _port(8101)
    model_uri: str = _model_uri(defaults.DEFAULT_DETECTOR_URI)
    score_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Minimum detection score; unset: the model card's default."
    )
    iou_threshold: float = Field(default=0.5, gt=0, le=1, description="Non-maximum suppression IoU threshold.")
    max_detections: int = Field(default=20, ge=1, description="Most detections returned per image.")
    inference_threads: int = Field(
        default=2,
        ge=1,
        description="Photos detected at once, each run single-threaded (2: concurrent searches use two cores; "
        "bench/e2e.py measured +37 % throughput at 8 clients on 2 cores over 1).",
    )
    # Shop the look (#15): garments of the detected people from a pose model ('' turns it off).
    pose_model_uri: str = Field(
        default=defaults.DEFAULT_POSE_URI, description="Pose model folder URI; empty: no garment regions."
    )
    pose_model_sha256: str | None = Field(default=None, description="Pin: refuse a pose model whose sha256 differs.")
    pose_max_people: int = Field(default=4, ge=1, description="Most people (best scored) whose garments are found.")
    pose_min_score: float = Field(
        default=0.3, ge=0, le=1, description="Keypoint confidence a garment's body points need to be used."
    )


class EmbedderSettings(ModelServiceSettings):
    """`imgsearch serve embedder`: one L2-normalised vector per box, with dynamic micro-batching."""

    model_config = SettingsConfigDict(env_prefix="IMGSEARCH_EMBEDDER_")

    port: int = _port(8102)
    model_uri: str = _model_uri(defaults.DEFAULT_EMBEDDER_URI)
    max_batch_size: int = Field(default=16, ge=1, description="Most crops run in one onnxruntime batch.")
    max_batch_wait_ms: float = Field(
        default=2.0, ge=0, description="How long the first queued crop waits for others to join its batch."
    )
    max_boxes: int = Field(default=64, ge=1, description="Most boxes accepted in one request.")
    keep_images_mib: int = Field(
        default=64, ge=0, description="Memory for decoded photos kept a few seconds for a boxes-only call; 0: off."
    )


class IndexSettings(StoreSettings, IndexWorkerFields):
    """`imgsearch serve index`: serves the published annoy index and swaps in new versions."""

    model_config = SettingsConfigDict(env_prefix="IMGSEARCH_INDEX_")

    port: int = _port(8103)
    index_uri: str = Field(
        default=(defaults.DEFAULT_VAR_DIR / "index").as_uri(),
        description="Index store root URI (file:// or s3://) holding CURRENT and versions/.",
    )
    poll_seconds: float = Field(
        default=30.0, ge=0, description="How often CURRENT is checked for a new version; 0 disables polling."
    )
    changes_poll_seconds: float = Field(
        default=1.0, ge=0, description="How often the served version's change log is checked; 0 disables it."
    )
    local_dir: Path = Field(
        default=defaults.DEFAULT_VAR_DIR / "cache" / "index", description="Where index versions are downloaded."
    )
    keep_versions: int = Field(default=2, ge=1, description="Index versions kept on local disk (current + rollback).")
    prefault: bool = Field(default=False, description="Read the whole index into memory at load (no slow first query).")
    embedder_sha256: str | None = Field(
        default=None, description="Refuse an index not built with this embedder (sha256 of its model.onnx)."
    )
    dim: int | None = Field(default=None, ge=1, description="Refuse an index whose vector dimension differs.")
    max_k: int = Field(default=100, ge=1, description="Largest k accepted.")
    max_vectors: int = Field(default=64, ge=1, description="Most query vectors in one request.")
    partition: Annotated[int | None, BeforeValidator(_empty_none)] = Field(
        default=None,
        ge=0,
        description="Serve only this partition of partitioned index versions (issue 16); unset: the whole index.",
    )
    partition_drop_idle_s: float = Field(
        default=30.0,
        gt=0,
        description="A partition keeps the previous version until no query asked for it for this long (the "
        "gateways switched), at least this long after the new one loaded.",
    )
    partition_drop_timeout_s: float = Field(
        default=600.0, gt=0, description="A partition drops the previous version this long after the new one loaded."
    )


class GatewaySettings(DecodingSettings, QueryLogFields, ShadowFields):
    """`imgsearch serve gateway`: the public search API in front of the three services."""

    model_config = SettingsConfigDict(env_prefix="IMGSEARCH_GATEWAY_")

    port: int = _port(8000)
    decode_memory_mib: int = _decode_memory_mib(224)
    detector_url: str = Field(default="http://127.0.0.1:8101", description="Base URL of the detector service.")
    embedder_url: str = Field(default="http://127.0.0.1:8102", description="Base URL of the embedder service.")
    index_url: str = Field(default="http://127.0.0.1:8103", description="Base URL of the index service.")
    connect_timeout_s: float = Field(default=0.5, gt=0, description="Timeout to open a connection to a backend.")
    detect_timeout_s: float = Field(
        default=2.0, gt=0, description="Budget of one detector call; past it the whole image is searched instead."
    )
    embed_timeout_s: float = Field(default=5.0, gt=0, description="Budget of one embedder call (504 past it).")
    query_timeout_s: float = Field(default=2.0, gt=0, description="Budget of one index call (504 past it).")
    retries: int = Field(
        default=2, ge=0, description="Extra attempts of an idempotent backend call after a connection failure."
    )
    retry_backoff_s: float = Field(default=0.05, ge=0, description="Pause before the first retry; doubles after.")
    max_connections: int = Field(default=64, ge=1, description="Pooled keep-alive connections per backend.")
    index_check_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the index version and the detector's and embedder's models are checked; cached "
        "results end with a swap of either.",
    )
    cache_size: int = Field(default=1024, ge=0, description="Search results kept in the LRU cache; 0 disables it.")
    cache_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Bytes of answers (their JSON) the result cache holds at most; a larger answer is not cached; "
        "0 disables the cache.",
    )
    default_k: int = Field(default=10, ge=1, description="Results per item when the request does not say.")
    max_k: int = Field(default=100, ge=1, description="Largest k accepted.")
    max_items: int = Field(default=8, ge=1, description="Most detected items searched per photo (highest scores).")
    forward_max_side: int = Field(
        default=2048, ge=0, description="Photos larger than this are shrunk once before detection/embedding; 0: never."
    )
    speculate_max_inflight: int = Field(
        default=1,
        ge=0,
        description="Embed the whole image alongside detection while fewer searches than this are in flight "
        "(cores idle; it is the answer when nothing is detected); 0: never.",
    )
    min_item_px: int = Field(default=8, ge=1, description="Detections narrower or shorter than this are ignored.")
    static_dir: Path = Field(
        default=Path(__file__).resolve().parents[1] / "static", description="Folder whose index.html is served at /."
    )


SETTINGS_CLASSES: dict[str, type[CommonSettings]] = {
    "detector": DetectorSettings,
    "embedder": EmbedderSettings,
    "index": IndexSettings,
    "gateway": GatewaySettings,
}
