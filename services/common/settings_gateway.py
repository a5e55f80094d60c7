"""The gateway's settings groups: its backends, its result cache, its searches, its decode memory.
Flat names (env, flags) are in services/common/settings_groups.py; the query log and shadow groups are in
settings_ops.py.
"""

from __future__ import annotations

from pydantic import Field

from services.common.settings_groups import SettingsGroup, flat_prefix
from services.common.settings_shared import DecodeGroup, decode_memory_field


class GatewayDecode(DecodeGroup):
    """The gateway's pod has less memory to spare for decodes than a model service's (k8s/base)."""

    memory_mib: int = decode_memory_field(224)


class CacheGroup(SettingsGroup):
    """The LRU cache of search answers."""

    model_config = flat_prefix("cache_")

    size: int = Field(default=1024, ge=0, description="Search results kept in the LRU cache; 0 disables it.")
    max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Bytes of answers (their JSON) the result cache holds at most; a larger answer is not cached; "
        "0 disables the cache.",
    )


class SearchGroup(SettingsGroup):
    """How one search is done: results per item, which items, the photo forwarded, speculation."""

    default_k: int = Field(default=10, ge=1, description="Results per item when the request does not say.")
    max_k: int = Field(default=100, ge=1, description="Largest k accepted.")
    max_items: int = Field(default=8, ge=1, description="Most detected items searched per photo (highest scores).")
    min_item_px: int = Field(default=8, ge=1, description="Detections narrower or shorter than this are ignored.")
    forward_max_side: int = Field(
        default=2048, ge=0, description="Photos larger than this are shrunk once before detection/embedding; 0: never."
    )
    speculate_max_inflight: int = Field(
        default=1,
        ge=0,
        description="Embed and search the whole image alongside detection while fewer searches than this are in "
        "flight (cores idle; it is the answer when nothing is detected); 0: never.",
    )


class BackendGroup(SettingsGroup):
    """The detector, embedder and index the gateway calls: where they are, the budgets, retries and pools."""

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
    max_answer_mib: int = Field(
        default=8,
        ge=1,
        description="Longest answer read from a backend (MiB); a longer one is that call's failure (503, a missing "
        "partition). Real answers are under 2 MiB (k=100 for 8 items); the pod's 512 MiB limit holds a few at the cap.",
    )
    index_check_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the index version and the detector's and embedder's models are checked; cached "
        "results end with a swap of either.",
    )
