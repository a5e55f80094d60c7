"""The gateway's operations features as settings groups: the query log and shadow evaluation (off by default).

Their flat names (env, flags) are the field names prefixed with the group's: `query_log_uri`, `shadow_timeout_s`.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from services.common.settings_groups import SettingsGroup, flat_prefix


class QueryLogGroup(SettingsGroup):
    """Sampled searches written to a store, for `imgsearch replay` (docs/operations.md, "Query log and replay")."""

    model_config = flat_prefix("query_log_")

    # Sampled uploads are personal data: off by default.
    uri: str = Field(
        default="", description="Store URI (file://, s3://) the sampled searches are written to; empty: off."
    )
    sample_rate: float = Field(
        default=0.0, ge=0, le=1, description="Fraction of searches written to the query log (0: off, 1: all)."
    )
    batch: int = Field(default=100, ge=1, description="Query log records per written object (JSON Lines).")
    flush_s: float = Field(
        default=10.0, gt=0, description="A query log record waits at most this long before its batch is written."
    )
    retention_days: float = Field(
        default=30.0, gt=0, description="Query log objects older than this are deleted (checked at most hourly)."
    )
    image_max_side: int = Field(
        default=0, ge=0, description="Larger photos are logged as a JPEG this size (replays differ); 0: as uploaded."
    )
    queue_mib: int = Field(
        default=32, ge=1, description="Memory the query log records waiting to be written may hold; past it dropped."
    )


class ShadowGroup(SettingsGroup):
    """A candidate embedder+index pair replayed on sampled searches (docs/operations.md, "Shadow evaluation")."""

    model_config = flat_prefix("shadow_")

    embedder_url: str = Field(
        default="", description="Base URL of a candidate embedder evaluated on sampled searches; empty: none."
    )
    index_url: str = Field(
        default="",
        description="Base URL of the candidate index built with the candidate embedder (a comma list: one per "
        "partition, all queried and merged like --index-url); empty: none.",
    )
    sample_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Fraction of computed searches replayed on the candidate pair after answering; 0: off.",
    )
    queue_size: int = Field(
        default=64, ge=1, description="Shadow searches waiting for the candidate at most; more are dropped."
    )
    timeout_s: float = Field(
        default=5.0, gt=0, description="Budget of one shadow search (candidate embed + query); past it: timeout."
    )

    @model_validator(mode="after")
    def _shadow_needs_a_candidate(self) -> Self:
        if self.sample_rate > 0 and not (self.embedder_url and self.index_url):
            raise ValueError("shadow_sample_rate > 0 needs both shadow_embedder_url and shadow_index_url")
        return self
