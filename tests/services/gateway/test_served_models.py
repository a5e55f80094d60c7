"""The gateway's result cache is keyed by the detector's and embedder's identity (services/gateway/served_models.py).

Unit tests of the identity and of `ServedModels` (a fake of the one class it calls, `Backends`); then a real
gateway whose own detector process is rolled from the default nanodet-m-int8 to nanodet-m under it: the old model's
cached answer must not be served once the new detector reports itself, while a search of the caller's box
(the detector is not asked) stays cached.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from services.defaults import MODELS_DIR
from services.gateway.backends import Backends
from services.gateway.served_models import ServedModels, detector_identity, models_state
from services.stack import ServiceProcess, free_port, start_service
from tests.helpers import shared_stack
from tests.helpers.http import search
from tests.helpers.paths import PHOTOS
from tests.helpers.wait import wait_until

FP32, INT8 = MODELS_DIR / "nanodet-m", MODELS_DIR / "nanodet-m-int8"


def _sha(model_dir: Path) -> str:
    return str(json.loads((model_dir / "card.json").read_text())["sha256"])


def test_models_state_keys_a_box_search_by_the_embedder_only_and_an_unknown_model_is_not_cacheable() -> None:
    assert models_state("d1", "e1", detected=True) != models_state("d2", "e1", detected=True)
    assert models_state("d1", "e1", detected=True) != models_state("d1", "e2", detected=True)
    assert models_state("d1", "e1", detected=False) == models_state("d2", "e1", detected=False)
    assert models_state(None, "e1", detected=True) is None and models_state("d1", None, detected=False) is None
    pose = {"name": "movenet", "version": "1", "sha256": "p1"}
    assert detector_identity({"sha256": "d1"}, pose) != detector_identity({"sha256": "d1"}, None)  # pose counts too


class FakeBackends:
    """Only what ServedModels calls: each backend's /readyz as (ready, body)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[bool, dict[str, Any]]] = {}

    async def readiness(self, backend: str) -> tuple[bool, dict[str, Any]]:
        return self.answers[backend]


def test_served_models_follow_readyz_and_keep_the_last_identity_while_a_backend_is_down() -> None:
    fake = FakeBackends()
    models = ServedModels(cast(Backends, fake))
    fake.answers = {"detector": (True, {"model": {"sha256": "d1"}}), "embedder": (True, {"model": {"sha256": "e1"}})}
    asyncio.run(models.refresh())
    before = models.state(detected=True)
    assert before is not None
    fake.answers["embedder"] = (False, {"error": "unreachable: ConnectionFailed"})  # an outage is not a roll-out
    asyncio.run(models.refresh())
    assert models.state(detected=True) == before
    fake.answers["embedder"] = (True, {"model": {"sha256": "e2"}})  # the embedder rolled out
    asyncio.run(models.refresh())
    assert models.state(detected=True) not in (None, before)


@dataclass
class RolledGateway:
    gateway: ServiceProcess
    detector: ServiceProcess
    logs: Path


@pytest.fixture
def rolled(tmp_path: Path) -> Iterator[RolledGateway]:
    """A gateway on the shared stack's embedder and index and on a detector of its own (the default, nanodet-m-int8)."""
    stack = shared_stack()
    detector = start_service("detector", free_port(), args=stack.args["detector"], log_path=tmp_path / "det.log")
    flags = [f"--detector-url={detector.url}", "--detect-timeout-s=60"]  # a slow detector must not go uncached
    gateway = start_service("gateway", free_port(), args=[*stack.args["gateway"], *flags], log_path=tmp_path / "gw.log")
    setup = RolledGateway(gateway, detector, tmp_path)
    try:
        assert detector.wait_ready(120), detector.log_tail()
        assert gateway.wait_ready(120), gateway.log_tail()
        yield setup
    finally:
        setup.gateway.stop()
        setup.detector.stop()


def _search(base: str, data: bytes, **params: Any) -> dict[str, Any]:
    resp = search(base, data, timeout=60, **params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.mark.stack
def test_a_cached_answer_is_not_served_after_a_detector_roll_out(rolled: RolledGateway) -> None:
    photo = (PHOTOS / "dog.jpg").read_bytes()
    box = "10,10,300,300"
    first = _search(rolled.gateway.url, photo)
    assert first["cached"] is False and first["models"]["detector"]["sha256"] == _sha(INT8)
    assert _search(rolled.gateway.url, photo)["cached"] is True
    assert _search(rolled.gateway.url, photo, box=box)["cached"] is False
    # The roll-out: the same detector Service (port) now runs the fp32 model.
    port = rolled.detector.port
    rolled.detector.stop()
    args = [*shared_stack().args["detector"], "--model-uri", FP32.as_uri()]  # the last --model-uri wins
    rolled.detector = start_service("detector", port, args=args, log_path=rolled.logs / "det-fp32.log")
    assert rolled.detector.wait_ready(120), rolled.detector.log_tail()
    # Within the gateway's poll (1 s) the new identity keys the lookups: the old answer is never hit again.
    wait_until(
        lambda: _search(rolled.gateway.url, photo)["cached"] is False,
        10,
        service=rolled.gateway,
        message="the old detector's cached answer is still served",
    )
    fresh = _search(rolled.gateway.url, photo)
    assert fresh["cached"] is True and fresh["models"]["detector"]["sha256"] == _sha(FP32)
    assert _sha(INT8) != _sha(FP32)
    # A search of the caller's box never asked the detector: its cached answer is still good and still served.
    assert _search(rolled.gateway.url, photo, box=box)["cached"] is True
