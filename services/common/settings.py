"""Settings of the four services: one pydantic-settings class each, read from the environment.

Fields are in nested groups (`settings.server.port`, `settings.shadow.embedder_url`), but every field keeps a
flat name (services/common/settings_groups.py): it is set by an environment variable `<PREFIX><FLAT NAME IN
CAPITALS>` (e.g. `IMGSEARCH_EMBEDDER_MAX_BATCH_SIZE=32`), by a flag of `imgsearch serve NAME`
(`--max-batch-size 32`) and by a keyword argument; flags override the environment. List fields accept JSON or
comma-separated text. The admin token is the one exception: it is read only from `IMGSEARCH_ADMIN_TOKEN` (never a
flag, never logged).

The Kubernetes ConfigMaps hold a key per flat name (tests/k8s): keep flat names stable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services import defaults
from services.common.settings_gateway import BackendGroup, CacheGroup, GatewayDecode, SearchGroup
from services.common.settings_groups import GroupedSettings
from services.common.settings_models import (
    DetectorModel,
    DetectorRuntime,
    EmbedderModel,
    ModelGroup,
    PeopleGroup,
    PoseGroup,
    RuntimeGroup,
)
from services.common.settings_ops import QueryLogGroup, ShadowGroup
from services.common.settings_shared import DecodeGroup, ServerGroup, StoreGroup, UploadGroup, port_field
from services.common.settings_workers import IndexWorkerFields

ADMIN_TOKEN_ENV = "IMGSEARCH_ADMIN_TOKEN"
ADMIN_TOKEN_MIN_CHARS = 24
# Stand-ins people commit or paste instead of a token ("REPLACE_ME", "changeme", "<token>", "example").
_PLACEHOLDER_MARKS = ("replace", "changeme", "change-me", "change_me", "placeholder", "example", "todo", "xxx", "<")


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


class CommonSettings(GroupedSettings):
    """Fields every service has."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True, populate_by_name=True)

    server: ServerGroup = Field(default_factory=ServerGroup)
    uploads: UploadGroup = Field(default_factory=UploadGroup)
    admin_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(ADMIN_TOKEN_ENV),
        description=(
            "Bearer token for /admin endpoints, only from env IMGSEARCH_ADMIN_TOKEN; unset, a placeholder or"
            f" under {ADMIN_TOKEN_MIN_CHARS} characters: admin off."
        ),
    )


class StoreSettings(CommonSettings):
    """Fields of the services that read a model or index store (not the gateway: it reads none)."""

    store: StoreGroup = Field(default_factory=StoreGroup)


class DecodingSettings(CommonSettings):
    """Fields of the services that decode uploaded images (detector, embedder, gateway)."""

    decode: DecodeGroup = Field(default_factory=DecodeGroup)


class ModelServiceSettings(StoreSettings, DecodingSettings):
    """Fields of the services that run an ONNX model (detector, embedder)."""

    model: ModelGroup  # each service's own model group, whose `uri` defaults to its model
    runtime: RuntimeGroup = Field(default_factory=RuntimeGroup)


class DetectorServer(ServerGroup):
    port: int = port_field(8101)


class DetectorSettings(ModelServiceSettings):
    """`imgsearch serve detector`: finds items in a photo."""

    model_config = SettingsConfigDict(env_prefix="IMGSEARCH_DETECTOR_")

    server: DetectorServer = Field(default_factory=DetectorServer)
    model: DetectorModel = Field(default_factory=DetectorModel)
    runtime: DetectorRuntime = Field(default_factory=DetectorRuntime)
    score_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Minimum detection score; unset: the model card's default."
    )
    iou_threshold: float = Field(default=0.5, gt=0, le=1, description="Non-maximum suppression IoU threshold.")
    max_detections: int = Field(default=20, ge=1, description="Most detections returned per image.")
    pose: PoseGroup = Field(default_factory=PoseGroup)
    people: PeopleGroup = Field(default_factory=PeopleGroup)


class EmbedderServer(ServerGroup):
    port: int = port_field(8102)


class EmbedderSettings(ModelServiceSettings):
    """`imgsearch serve embedder`: one L2-normalised vector per box, with dynamic micro-batching."""

    model_config = SettingsConfigDict(env_prefix="IMGSEARCH_EMBEDDER_")

    server: EmbedderServer = Field(default_factory=EmbedderServer)
    model: EmbedderModel = Field(default_factory=EmbedderModel)
    max_batch_size: int = Field(default=16, ge=1, description="Most crops run in one onnxruntime batch.")
    max_batch_wait_ms: float = Field(
        default=2.0, ge=0, description="How long the first queued crop waits for others to join its batch."
    )
    max_boxes: int = Field(default=64, ge=1, description="Most boxes accepted in one request.")
    keep_images_mib: int = Field(
        default=64, ge=0, description="Memory for decoded photos kept a few seconds for a boxes-only call; 0: off."
    )


class IndexServer(ServerGroup):
    port: int = port_field(8103)


class IndexSettings(StoreSettings, IndexWorkerFields):
    """`imgsearch serve index`: serves the published annoy index and swaps in new versions."""

    model_config = SettingsConfigDict(env_prefix="IMGSEARCH_INDEX_")

    server: IndexServer = Field(default_factory=IndexServer)
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


class GatewaySettings(DecodingSettings):
    """`imgsearch serve gateway`: the public search API in front of the three services."""

    model_config = SettingsConfigDict(env_prefix="IMGSEARCH_GATEWAY_")

    decode: GatewayDecode = Field(default_factory=GatewayDecode)
    backends: BackendGroup = Field(default_factory=BackendGroup)
    search: SearchGroup = Field(default_factory=SearchGroup)
    cache: CacheGroup = Field(default_factory=CacheGroup)
    query_log: QueryLogGroup = Field(default_factory=QueryLogGroup)
    shadow: ShadowGroup = Field(default_factory=ShadowGroup)
    static_dir: Path = Field(
        default=Path(__file__).resolve().parents[1] / "static", description="Folder whose index.html is served at /."
    )


SETTINGS_CLASSES: dict[str, type[CommonSettings]] = {
    "detector": DetectorSettings,
    "embedder": EmbedderSettings,
    "index": IndexSettings,
    "gateway": GatewaySettings,
}
