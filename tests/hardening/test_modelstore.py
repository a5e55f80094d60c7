"""A model service whose model store misbehaves at startup (HTTP 500, stalls, a file with the wrong sha256):
the process stays live, readiness stays false with a clear reason, retries are bounded and back off, nothing
unverified lands in the cache, and the service becomes ready by itself once the store behaves.

Real processes: an `imgsearch serve embedder` child pulling its model from the fault-injecting HTTP server
of `tests/conftest.py`. (`tests/imgcore/test_modelstore.py` tests the ModelStore class itself.)
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services import defaults
from services.stack import ServiceProcess, free_port, start_service
from tests.conftest import LocalHttpServer
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

MODEL = Path(defaults.MODELS_DIR) / "fmnist-lite0"
CARD_PATH, ONNX_PATH = "/models/fmnist-lite0/card.json", "/models/fmnist-lite0/model.onnx"
RETRIES = 2  # --model-retries: 1 + 2 attempts per fetch round


@pytest.fixture
def store(http_server: LocalHttpServer) -> LocalHttpServer:
    folder = http_server.root / "models" / "fmnist-lite0"
    folder.mkdir(parents=True)
    for name in ("card.json", "model.onnx"):
        shutil.copyfile(MODEL / name, folder / name)
    return http_server


@pytest.fixture
def start_embedder(store: LocalHttpServer, tmp_path: Path) -> Iterator[object]:
    procs: list[ServiceProcess] = []

    def start(*extra: str) -> ServiceProcess:
        args = [
            "--model-uri",
            f"{store.url}/models/fmnist-lite0",
            "--model-cache-dir",
            str(tmp_path / "cache"),
            "--model-retries",
            str(RETRIES),
            *extra,
        ]
        proc = start_service("embedder", free_port(), args=args, log_path=tmp_path / "embedder.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def _state(svc: ServiceProcess) -> tuple[int | None, int | None, str]:
    """(livez status, readyz status, readyz error) — None while the port is not open yet."""
    try:
        live = httpx.get(svc.url + "/livez", trust_env=False, timeout=5).status_code
        ready = httpx.get(svc.url + "/readyz", trust_env=False, timeout=5)
    except httpx.HTTPError:
        return None, None, ""
    return live, ready.status_code, str(ready.json().get("error") or "")


def _watch_until_ready(svc: ServiceProcess, timeout_s: float) -> list[tuple[int | None, int | None, str]]:
    """Poll live/ready every 0.1 s until ready; return every state seen."""
    seen = []

    def ready() -> bool:
        seen.append(_state(svc))
        return seen[-1][1] == 200

    wait_until(ready, timeout_s, service=svc, message=lambda: f"not ready: {seen[-1]}")
    return seen


def _cached_models(cache: Path) -> list[Path]:
    return sorted(cache.rglob("model.onnx")) if cache.exists() else []


def test_store_answering_500_is_retried_with_backoff_and_the_service_gets_ready_once_it_recovers(
    store: LocalHttpServer, start_embedder: object, tmp_path: Path
) -> None:
    store.fail(CARD_PATH, times=2 * (RETRIES + 1), status=500)  # two whole fetch rounds fail
    t0 = time.monotonic()
    svc = start_embedder()  # type: ignore[operator]
    seen = _watch_until_ready(svc, 60)
    took = time.monotonic() - t0
    failing = [s for s in seen if s[1] == 503 and "HTTP 500" in s[2]]
    assert failing, seen  # readiness said why it was not ready
    assert all(live == 200 for live, ready, _ in seen if ready == 503)  # live all along
    assert store.count(CARD_PATH) == 2 * (RETRIES + 1) + 1  # bounded: exactly the configured attempts
    assert store.count(ONNX_PATH) == 1
    # backoff: 0.5 s and 1 s between attempts of a round, 1 s between the two rounds
    assert took > 2 * (0.5 + 1.0) + 1.0
    log = (tmp_path / "embedder.log").read_text()
    assert "loading embedder failed" in log and "HTTP 500" in log and "retrying in" in log


def test_stalled_store_is_cut_by_the_store_timeout_not_waited_out(
    store: LocalHttpServer, start_embedder: object
) -> None:
    store.stall(CARD_PATH, seconds=30, times=RETRIES + 1)  # one whole round stalls
    t0 = time.monotonic()
    svc = start_embedder("--store-timeout-s", "0.5")  # type: ignore[operator]
    seen = _watch_until_ready(svc, 25)
    assert time.monotonic() - t0 < 25  # far less than one 30 s stall
    assert any(s[1] == 503 and "Timeout" in s[2] for s in seen), seen
    assert store.count(CARD_PATH) == RETRIES + 2


def test_model_with_the_wrong_sha256_is_never_cached_and_readiness_stays_false(
    store: LocalHttpServer, start_embedder: object, tmp_path: Path
) -> None:
    served = store.root / ONNX_PATH.lstrip("/")
    good = served.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    served.write_bytes(bytes(bad))  # the card still declares the sha256 of the good bytes
    svc = start_embedder()  # type: ignore[operator]
    wait_until(lambda: "sha256" in _state(svc)[2], 60, service=svc)
    # two more load rounds (1 s, then 2 s apart) with the same bad file
    wait_until(lambda: store.count(ONNX_PATH) >= 3, 60, service=svc)
    time.sleep(1.0)  # the third round has failed; the next one starts 4 s after it
    live, ready, error = _state(svc)
    assert (live, ready) == (200, 503) and "card declares" in error
    cache = tmp_path / "cache"
    assert _cached_models(cache) == []  # no partial or unverified model.onnx anywhere in the cache
    assert [p.name for p in cache.iterdir()] == []  # staging folders cleaned up too
    embed = httpx.post(svc.url + "/v1/embed", files={"image": ("a.png", b"x")}, trust_env=False)
    assert embed.status_code == 503 and "not loaded" in embed.json()["error"]
    assert "has sha256" in (tmp_path / "embedder.log").read_text()

    served.write_bytes(good)  # the store is fixed: the service recovers without a restart
    _watch_until_ready(svc, 30)
    (entry,) = _cached_models(cache)
    assert hashlib.sha256(entry.read_bytes()).hexdigest() == hashlib.sha256(good).hexdigest()
