"""Faults on a private stack of real processes: backends frozen (SIGSTOP) or killed (SIGKILL) while searches
run, and SIGTERM while requests are in flight.

`tests/services/gateway/test_faults.py` covers a backend stopped cleanly (SIGTERM) and a socket that never answers;
here the real services are frozen or killed, many requests are in flight, and nothing may hang.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from services.stack import free_port, start_service
from tests.helpers import Stack, running_stack
from tests.helpers.paths import DATA
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

PHOTOS = DATA / "photos"
PHOTO = (PHOTOS / "dog.jpg").read_bytes()
DETECT_BUDGET_S, EMBED_BUDGET_S, QUERY_BUDGET_S = 0.5, 1.0, 1.0
SLACK_S = 2.0  # decoding, detection and scheduling on 2 shared cores, on top of a budget


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    budgets = [
        f"--detect-timeout-s={DETECT_BUDGET_S}",
        f"--embed-timeout-s={EMBED_BUDGET_S}",
        f"--query-timeout-s={QUERY_BUDGET_S}",
        "--cache-size=0",
    ]
    with running_stack(extra={"gateway": budgets}) as s:
        yield s


def _search(base: str, data: bytes = PHOTO, k: int = 3, timeout: float = 30.0) -> tuple[int, dict[str, object], float]:
    t0 = time.perf_counter()
    resp = httpx.post(
        base + "/v1/search", params={"k": k}, files={"image": ("p.jpg", data)}, trust_env=False, timeout=timeout
    )
    return resp.status_code, resp.json(), time.perf_counter() - t0


def _ready(base: str) -> bool:
    try:
        return httpx.get(base + "/readyz", trust_env=False, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


class Frozen:
    """SIGSTOP a service for a block; SIGCONT afterwards even if the block fails."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.pid = stack.services[name].proc.pid

    def __enter__(self) -> Frozen:
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


@pytest.mark.parametrize(("backend", "budget_s"), [("embedder", EMBED_BUDGET_S), ("index", QUERY_BUDGET_S)])
def test_frozen_backend_gives_504_within_budget_to_every_concurrent_request_then_recovers(
    stack: Stack, backend: str, budget_s: float
) -> None:
    gw = stack.gateway_url
    gateway_pid = stack.services["gateway"].proc.pid

    def healthy_burst() -> list[tuple[int, dict[str, object], float]] | None:
        with ThreadPoolExecutor(8) as pool:  # the same burst with every backend healthy, for comparison
            answers = list(pool.map(lambda k: _search(gw, k=k), range(1, 9)))
        return answers if {status for status, _, _ in answers} == {200} else None

    # On a busy machine a healthy search can pass the tight budget too (and rightly get 504): the comparison
    # needs a burst that passed whole.
    healthy = wait_until(healthy_burst, 120, interval_s=0.5, message="no healthy burst passed whole")
    healthy_s = max(elapsed for _, _, elapsed in healthy)
    with Frozen(stack, backend), ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda k: _search(gw, k=k), range(1, 9)))
        t0 = time.perf_counter()
        ready = httpx.get(gw + "/readyz", trust_env=False, timeout=10)
        readyz_s = time.perf_counter() - t0
    for status, body, elapsed in answers:
        assert status == 504, body
        assert backend in str(body["error"])
        # waiting on the frozen backend costs at most its budget on top of a healthy search
        assert elapsed < healthy_s + budget_s + 1.0, (elapsed, healthy_s)
    assert ready.status_code == 503 and ready.json()["backends"][backend]["ready"] is False
    assert readyz_s < 1.0 + SLACK_S  # the readiness probe is bounded too
    wait_until(lambda: _search(gw)[0] == 200, 60)  # the same gateway process recovers by itself
    assert stack.services["gateway"].proc.pid == gateway_pid and stack.services["gateway"].alive()
    metrics = httpx.get(gw + "/metrics", trust_env=False).text
    assert f'imgsearch_backend_errors_total{{backend="{backend}",kind="timeout"}}' in metrics


def test_frozen_detector_degrades_to_whole_image_search_within_its_budget(stack: Stack) -> None:
    gw = stack.gateway_url
    with Frozen(stack, "detector"):
        status, body, elapsed = _search(gw, k=4)
    assert status == 200, body
    items = body["items"]
    assert isinstance(items, list) and len(items) == 1 and items[0]["fallback"] == "whole_image"
    assert len(items[0]["results"]) == 4
    assert elapsed < DETECT_BUDGET_S + EMBED_BUDGET_S + SLACK_S
    # Detected again: the photo's bicycle and dog are no catalog kinds, so they are listed as ignored (#15).
    wait_until(lambda: "ignored" in _search(gw, k=4)[1], 20)


def test_index_killed_while_searches_run_never_hangs_a_request_and_recovers_without_gateway_restart(
    stack: Stack,
) -> None:
    gw = stack.gateway_url
    gateway_pid = stack.services["gateway"].proc.pid
    results: list[tuple[int, float]] = []
    stop = threading.Event()

    def client(k: int) -> None:
        while not stop.is_set():
            status, _, elapsed = _search(gw, k=k)
            results.append((status, elapsed))

    threads = [threading.Thread(target=client, args=(k,)) for k in (2, 3, 4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(results) >= 3, 30)
        stack.services["index"].proc.kill()  # SIGKILL: no drain, connections cut mid-request
        stack.services["index"].proc.wait()
        killed_at = len(results)
        time.sleep(1.5)
        during = results[killed_at:]
        stack.start("index")
        stack.services["index"].wait_ready(60)
        wait_until(lambda: any(s == 200 for s, _ in results[killed_at + len(during) :]), 20)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert all(not t.is_alive() for t in threads)  # no request hung
    assert during and {s for s, _ in during} <= {200, 503}, {s for s, _ in during}
    assert 503 in {s for s, _ in during}
    healthy_s = max(elapsed for _, elapsed in results[:killed_at])  # searches before the kill
    assert max(elapsed for _, elapsed in results) < healthy_s + QUERY_BUDGET_S + SLACK_S
    assert stack.services["gateway"].proc.pid == gateway_pid and stack.services["gateway"].alive()


def test_sigterm_to_the_gateway_lets_in_flight_searches_finish(stack: Stack) -> None:
    """Searches held in flight (embedder frozen) complete with 200 after SIGTERM; new connections are refused."""
    port = free_port()
    args = [
        f"--detector-url={stack.url('detector')}",
        f"--embedder-url={stack.url('embedder')}",
        f"--index-url={stack.url('index')}",
        "--embed-timeout-s=20",
        "--cache-size=0",
    ]
    gateway = start_service("gateway", port, args=args, log_path=stack.root / "logs" / "gateway-drain.log")
    try:
        gateway.wait_ready(60)
        with ThreadPoolExecutor(4) as pool:
            with Frozen(stack, "embedder"):
                futures = [pool.submit(_search, gateway.url, PHOTO, k) for k in range(1, 5)]
                time.sleep(1.0)  # all four are now waiting on the frozen embedder
                assert not any(f.done() for f in futures)
                gateway.proc.send_signal(signal.SIGTERM)
                time.sleep(1.0)
                assert gateway.alive()  # draining, not gone
                with pytest.raises(httpx.ConnectError):
                    httpx.get(gateway.url + "/livez", trust_env=False, timeout=2)
            answers = [f.result(timeout=30) for f in futures]
        assert [status for status, _, _ in answers] == [200] * 4, answers
        assert gateway.proc.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after the drain
    finally:
        gateway.stop()


def test_sigterm_to_the_embedder_lets_in_flight_embeddings_finish(stack: Stack) -> None:
    port = free_port()
    embedder = start_service(
        "embedder", port, args=stack.args["embedder"], log_path=stack.root / "logs" / "embedder-drain.log"
    )
    try:
        embedder.wait_ready(60)
        # Large crops of a large photo: each request's crops take a while to prepare, so requests are still in
        # flight half a second in (the 56 px embedder embeds 64 small crops in ~25 ms: they were all done).
        big = Image.open(io.BytesIO(PHOTO)).convert("RGB").resize((1600, 1200))
        buf = io.BytesIO()
        big.save(buf, "JPEG", quality=85)
        photo = buf.getvalue()
        boxes = "[" + ",".join(f"[{i},{i},{i + 1200},{i + 900}]" for i in range(0, 256, 4)) + "]"  # 64 crops

        def embed() -> int:
            resp = httpx.post(
                embedder.url + "/v1/embed",
                params={"boxes": boxes},
                files={"image": ("p.jpg", photo)},
                trust_env=False,
                timeout=60,
            )
            return resp.status_code if resp.status_code != 200 else len(resp.json()["vectors"])

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(embed) for _ in range(8)]
            time.sleep(0.5)
            running = sum(not f.done() for f in futures)
            embedder.proc.send_signal(signal.SIGTERM)
            counts = [f.result(timeout=60) for f in futures]
        assert running > 0  # SIGTERM really arrived while requests were being served
        assert counts == [64] * 8  # every request accepted before SIGTERM got all its vectors
        assert embedder.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        embedder.stop()
