"""A dead or stalled backend gives a fast 503/504 JSON (or a degraded answer), and the gateway recovers by
itself when the backend comes back."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from services.stack import free_port, start_service
from tests.helpers import Stack, running_stack
from tests.helpers.http import search
from tests.helpers.paths import DATA
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

PHOTO = (DATA / "photos" / "dog.jpg").read_bytes()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as s:
        yield s


def test_dead_embedder_gives_fast_503_then_recovers_after_restart(stack: Stack) -> None:
    gw = stack.gateway_url
    assert search(gw, PHOTO).status_code == 200
    stack.stop("embedder")
    t0 = time.perf_counter()
    resp = search(gw, PHOTO, k=9)
    elapsed = time.perf_counter() - t0
    assert resp.status_code == 503, resp.text
    assert "embedder" in resp.json()["error"]
    assert elapsed < 1.5
    wait_until(lambda: httpx.get(gw + "/readyz", trust_env=False).status_code == 503, 5)
    assert httpx.get(gw + "/readyz", trust_env=False).json()["backends"]["embedder"]["ready"] is False
    stack.start("embedder")
    stack.services["embedder"].wait_ready(60)
    wait_until(lambda: search(gw, PHOTO, k=9).status_code == 200, 10)
    wait_until(lambda: httpx.get(gw + "/readyz", trust_env=False).status_code == 200, 5)


def test_dead_detector_degrades_to_whole_image_search(stack: Stack) -> None:
    gw = stack.gateway_url
    stack.stop("detector")
    try:
        t0 = time.perf_counter()
        resp = search(gw, PHOTO, k=4)
        assert time.perf_counter() - t0 < 1.5
        assert resp.status_code == 200, resp.text
        items = resp.json()["items"]
        assert len(items) == 1 and items[0]["fallback"] == "whole_image"
        assert len(items[0]["results"]) == 4
        assert search(gw, PHOTO, k=4).json()["cached"] is False  # a degraded answer is not cached
    finally:
        stack.start("detector")
        stack.services["detector"].wait_ready(60)
    # Detected again: its bicycle and dog are no catalog kinds, so they are listed as ignored (#15).
    wait_until(lambda: "ignored" in search(gw, PHOTO, k=4).json(), 10)


def test_dead_index_gives_503(stack: Stack) -> None:
    stack.stop("index")
    try:
        resp = search(stack.gateway_url, PHOTO, k=6)
        assert resp.status_code == 503 and "index" in resp.json()["error"]
    finally:
        stack.start("index")
        stack.services["index"].wait_ready(60)


def test_stalled_embedder_gives_504_within_budget(stack: Stack) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    port = free_port()
    gateway = start_service(
        "gateway",
        port,
        args=[
            f"--detector-url={stack.url('detector')}",
            f"--embedder-url=http://127.0.0.1:{silent.getsockname()[1]}",
            f"--index-url={stack.url('index')}",
            "--embed-timeout-s=0.5",
        ],
        log_path=stack.root / "logs" / "gateway-stalled.log",
    )
    try:
        wait_until(lambda: _up(port) and httpx.get(gateway.url + "/livez", trust_env=False).status_code == 200, 60)
        t0 = time.perf_counter()
        resp = search(gateway.url, PHOTO, k=3)
        elapsed = time.perf_counter() - t0
        assert resp.status_code == 504, resp.text
        assert "embedder" in resp.json()["error"]
        assert elapsed < 2.0
        assert httpx.get(gateway.url + "/readyz", trust_env=False, timeout=5).status_code == 503
    finally:
        gateway.stop()
        silent.close()


def _up(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
