"""What the gateway knows of the models behind its detector and embedder: their identity (sha256), learnt
from their /readyz (polled, and whenever the gateway's own /readyz asks them), so that cached answers are keyed
by the models that computed them and a roll-out of either model misses the cache instead of serving the old
model's answers until they are evicted."""

from __future__ import annotations

import asyncio
from typing import Any

from services.gateway.backends import Backends


def model_identity(model: dict[str, Any] | None) -> str | None:
    """A backend's `model` object (its /readyz and every answer carry one) as one string: the sha256 of the
    ONNX file, or name@version when a backend reports no sha256."""
    if not model:
        return None
    return str(model.get("sha256") or f"{model.get('name')}@{model.get('version')}")


def detector_identity(model: dict[str, Any] | None, pose: dict[str, Any] | None) -> str | None:
    """The detector's identity: its model and, when on, its pose model (#15: it decides the garment regions)."""
    main, extra = model_identity(model), model_identity(pose)
    return main if main is None or extra is None else f"{main}+{extra}"


def models_state(detector: str | None, embedder: str | None, *, detected: bool) -> str | None:
    """What an answer is cached under: None (not cacheable) while a model it depends on is unknown. A search of
    the caller's box never asks the detector, so the detector's identity is not part of its key."""
    if embedder is None or (detected and detector is None):
        return None
    return f"{detector if detected else '-'}/{embedder}"


class ServedModels:
    """The detector's and embedder's identity as last reported by a ready backend."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self.detector: str | None = None
        self.embedder: str | None = None

    def note(self, detector: tuple[bool, dict[str, Any]] | None, embedder: tuple[bool, dict[str, Any]] | None) -> None:
        """Remember the identities of ready backends' /readyz answers (`(ready, body)`, as `readiness` returns).
        A backend that is not ready keeps the last identity: an outage is not a roll-out."""
        if detector is not None and detector[0]:
            body = detector[1]
            self.detector = detector_identity(body.get("model"), (body.get("pose") or {}).get("model"))
        if embedder is not None and embedder[0]:
            self.embedder = model_identity(embedder[1].get("model"))

    async def refresh(self) -> None:
        """Ask both backends now."""
        detector, embedder = await asyncio.gather(
            self.backends.readiness("detector"), self.backends.readiness("embedder")
        )
        self.note(detector, embedder)

    async def watch(self, every_s: float) -> None:
        """Follow the models (so a cached answer outlives a model roll-out by at most `every_s`)."""
        while True:
            await self.refresh()
            await asyncio.sleep(every_s)

    def state(self, *, detected: bool) -> str | None:
        """What a search's answer is looked up under now (`detected`: the detector is asked)."""
        return models_state(self.detector, self.embedder, detected=detected)
