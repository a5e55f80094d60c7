"""The index service's worker processes as settings fields (services/index/workers.py).

A plain pydantic model mixed into `IndexSettings`, which reads it from the environment like its own fields.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class IndexWorkerFields(BaseModel):
    """Pre-forked workers: one process imports the app, N forked workers share its heap and the mapped index."""

    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes serving one port, forked after import so they share memory; /metrics and "
        "/admin/reload cover all of them. 1: a single process.",
    )
