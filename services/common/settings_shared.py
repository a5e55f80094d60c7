"""The settings groups several services share: how a service serves (`server`), what an upload may be
(`uploads`), the memory its decoding may take (`decode`) and the model/index store (`store`). Flat names
(env, flags) are in services/common/settings_groups.py.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from imgcore.image import DecodeLimits
from services.common.settings_groups import SettingsGroup, flat_prefix


def port_field(default: int) -> Any:
    """The `port` field: every service has its own default, so the four run side by side on one host."""
    return Field(default=default, ge=0, le=65535, description="TCP port to listen on.")


def decode_memory_field(default: int) -> Any:
    """The decode group's `memory_mib` field (flat name `decode_memory_mib`), whose default is what the
    service's pod can spare (k8s/base)."""
    return Field(
        default=default,
        ge=1,
        description="Memory the image decodes in flight may hold together (MiB); each first reserves its peak, "
        "planned from the image header. In k8s 7/16 of the container's memory limit.",
    )


class ServerGroup(SettingsGroup):
    """The process and its HTTP server: where it listens, its logging, slow clients, shutdown."""

    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0 in a container).")
    port: int = port_field(8000)
    log_level: str = Field(default="INFO", description="Python logging level: DEBUG, INFO, WARNING or ERROR.")
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
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Most bytes of a request's URL and headers together; past it 431 and the connection is closed.",
    )
    max_headers: int = Field(
        default=100, ge=8, description="Most header lines of one request; past it 431 and the connection is closed."
    )
    max_client_connections: int = Field(
        default=512,
        ge=1,
        description="Open client connections served at once; past it 503 (GET /livez, /readyz, /metrics excepted).",
    )


class UploadGroup(SettingsGroup):
    """What a request may carry."""

    max_bytes: int = Field(
        default=20 * 1024 * 1024,
        gt=0,
        validation_alias="max_upload_bytes",
        description="Largest accepted request body; refused while streaming (413).",
    )
    max_pixels: int = Field(default=40_000_000, gt=0, description="Largest accepted image in pixels (bombs: 413).")
    max_side: int = Field(default=20_000, gt=0, description="Largest accepted image width or height in pixels.")

    def decode_limits(self) -> DecodeLimits:
        """The image decoder limits these settings describe."""
        return DecodeLimits(max_bytes=self.max_bytes, max_pixels=self.max_pixels, max_side=self.max_side)


class DecodeGroup(SettingsGroup):
    """The memory an upload's decoding may take (detector, embedder, gateway)."""

    model_config = flat_prefix("decode_")

    memory_mib: int = decode_memory_field(672)
    wait_s: float = Field(
        default=10.0, ge=0, description="How long an upload waits for decode memory before it gets 503."
    )


class StoreGroup(SettingsGroup):
    """The model/index store client (not the gateway's: it reads none)."""

    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint for s3:// URIs (else boto3's AWS_ENDPOINT_URL or AWS)."
    )
    timeout_s: float = Field(
        default=30.0, gt=0, validation_alias="store_timeout_s", description="Timeout of one model/index store request."
    )
