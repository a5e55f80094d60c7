"""Slow and stalled clients against real services: hundreds of raw sockets that send half a request and stop.

Before issue 13, 200 half-sent uploads were all still held after 35 s and a connection that sent nothing was
held for ever. Now a late body gets a JSON 408 after `--body-timeout-s`, late headers after
`--header-timeout-s`, and past `--max-client-connections` a JSON 503 (health probes excepted), while real
searches keep answering.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from services.stack import ServiceProcess, free_port, start_service
from tests.helpers import Stack, running_stack
from tests.helpers.http import metric_value, search
from tests.helpers.paths import DATA

pytestmark = pytest.mark.stack

PHOTO = (DATA / "photos" / "dog.jpg").read_bytes()
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 8.0  # long enough to run a few real searches while every attacker is still held
SLACK_S = 3.0  # scheduling on 2 shared cores, on top of a timeout
SEARCH_BOUND_S = 10.0
ATTACKERS = 200
CAP = 30  # connections the capped gateway serves
LIMITS = [f"--header-timeout-s={HEADER_TIMEOUT_S}", f"--body-timeout-s={BODY_TIMEOUT_S}"]
BOUNDARY = "slowloris"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    extra = {name: list(LIMITS) for name in ("gateway", "detector", "index")}
    extra["gateway"].append("--cache-size=0")  # every search does the whole work
    with running_stack(extra=extra) as s:
        yield s


def _half_upload(path: str) -> bytes:
    """Headers of a 1 MB multipart upload and its first part: what a stalled phone sends."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    headers = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        "Content-Length: 1000000\r\n\r\n"
    ).encode()
    return headers + head + PHOTO[:4096]


@dataclass
class Attacker:
    sock: socket.socket
    sent_at: float
    received: bytes = b""
    closed_after_s: float | None = None  # from sent_at to the server's close

    @property
    def status(self) -> int | None:
        line = self.received.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 else None

    @property
    def body(self) -> bytes:
        return self.received.split(b"\r\n\r\n", 1)[-1]


def _open(url: str, payload: bytes, n: int, pause_s: float = 0.0) -> list[Attacker]:
    host, port = url.removeprefix("http://").split(":")
    attackers = []
    for _ in range(n):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(payload)
        attackers.append(Attacker(sock, time.monotonic()))
        time.sleep(pause_s)
    return attackers


def _watch(attackers: list[Attacker], timeout_s: float) -> list[Attacker]:
    """Read every socket until the server closes it or `timeout_s` passes (those stay `closed_after_s=None`)."""
    sel = selectors.DefaultSelector()
    for a in attackers:
        a.sock.setblocking(False)
        sel.register(a.sock, selectors.EVENT_READ, a)
    deadline = time.monotonic() + timeout_s
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            a = key.data
            try:
                chunk = a.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            a.received += chunk
            if not chunk:
                a.closed_after_s = time.monotonic() - a.sent_at
                sel.unregister(a.sock)
    for a in attackers:
        a.sock.close()
    return attackers


def _timed(call: Callable[[], httpx.Response]) -> tuple[int, float, float]:
    """(status, seconds, monotonic end) of one real request."""
    t0 = time.monotonic()
    resp = call()
    return resp.status_code, time.monotonic() - t0, time.monotonic()


def _median_s(timed: list[tuple[int, float, float]]) -> str:
    return f"{statistics.median(t for _, t, _ in timed):.3f} s"


def _rejections(url: str, reason: str) -> float:
    text = httpx.get(url + "/metrics", trust_env=False, timeout=10).text
    return metric_value(text, "imgsearch_rejections_total", reason=reason)


def _real_request(stack: Stack, target: str) -> Callable[[], httpx.Response]:
    if target == "detector":
        url = stack.services["detector"].url + "/v1/detect"
        return lambda: httpx.post(url, files={"image": ("p.jpg", PHOTO)}, trust_env=False, timeout=SEARCH_BOUND_S)
    return lambda: search(stack.gateway_url, PHOTO, k=3, timeout=SEARCH_BOUND_S)


@pytest.mark.parametrize(("target", "path"), [("gateway", "/v1/search"), ("detector", "/v1/detect")])
def test_200_stalled_uploads_get_408_in_time_while_real_searches_answer(stack: Stack, target: str, path: str) -> None:
    service = stack.services[target]
    real = _real_request(stack, target)
    before = _rejections(service.url, "body_timeout")
    quiet = [_timed(real) for _ in range(5)]
    attackers = _open(service.url, _half_upload(path), ATTACKERS)
    with ThreadPoolExecutor(1) as pool:
        watching = pool.submit(_watch, attackers, BODY_TIMEOUT_S + SLACK_S + 5)
        attacked = [_timed(real) for _ in range(5)]
        watched = watching.result()
    first_cut = min(a.sent_at + (a.closed_after_s or 1e9) for a in watched)
    assert [s for s, _, _ in quiet + attacked] == [200] * 10
    assert max(end for _, _, end in attacked) < first_cut, "searches must have run while every attacker was held"
    print(f"\n{target}, {ATTACKERS} stalled uploads: median {_median_s(quiet)} quiet, {_median_s(attacked)} attacked")
    held = [a for a in watched if a.closed_after_s is None]
    assert not held, f"{len(held)} of {ATTACKERS} stalled uploads still open after {BODY_TIMEOUT_S + SLACK_S + 5} s"
    cut_after = sorted(a.closed_after_s or 0.0 for a in watched)
    assert cut_after[0] >= BODY_TIMEOUT_S - 0.5, f"cut before the timeout: {cut_after[0]:.2f} s"
    assert cut_after[-1] <= BODY_TIMEOUT_S + SLACK_S, f"cut too late: {cut_after[-1]:.2f} s"
    assert {a.status for a in watched} == {408}
    assert all(json.loads(a.body) == {"error": "request body not received in time"} for a in watched)
    assert service.alive()
    assert _rejections(service.url, "body_timeout") - before == ATTACKERS


def test_stalled_headers_and_silent_connections_are_cut_after_the_header_timeout(stack: Stack) -> None:
    gw = stack.services["gateway"]
    before = _rejections(gw.url, "header_timeout")
    half_headers = _open(gw.url, b"POST /v1/search HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/", 50)
    silent = _open(gw.url, b"", 50)
    watched = _watch(half_headers + silent, HEADER_TIMEOUT_S + SLACK_S + 5)
    cut_after = sorted(a.closed_after_s or 1e9 for a in watched)
    assert HEADER_TIMEOUT_S - 0.5 <= cut_after[0] and cut_after[-1] <= HEADER_TIMEOUT_S + SLACK_S, cut_after
    assert {a.status for a in half_headers} == {408}
    assert json.loads(half_headers[0].body) == {"error": f"request headers not received within {HEADER_TIMEOUT_S:g} s"}
    assert {a.received for a in silent} == {b""}, "a client that sent nothing is closed without an answer"
    assert gw.alive()
    assert _rejections(gw.url, "header_timeout") - before == 100


def test_a_body_no_route_reads_trickled_after_the_answer_is_cut_after_the_body_timeout(stack: Stack) -> None:
    # /livez answers without reading the body; each byte that trickles in afterwards stops uvicorn's keep-alive
    # timer, so uvicorn alone would hold this connection for as long as the client trickles.
    host, port = stack.services["gateway"].url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=0.5)
    t0 = time.monotonic()
    sock.sendall(b"GET /livez HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\nab")
    received, closed_after_s = b"", None
    while closed_after_s is None and time.monotonic() - t0 < BODY_TIMEOUT_S + SLACK_S + 5:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            with contextlib.suppress(OSError):
                sock.send(b"x")  # one byte every half second
            continue
        except ConnectionResetError:
            chunk = b""
        received += chunk
        closed_after_s = None if chunk else time.monotonic() - t0
    sock.close()
    assert received.startswith(b"HTTP/1.1 200 ")
    assert closed_after_s is not None, "still open: the trickled body kept the connection"
    assert BODY_TIMEOUT_S - 0.5 <= closed_after_s <= BODY_TIMEOUT_S + 1 + SLACK_S, closed_after_s


def test_a_stalled_json_body_gets_408_from_the_index(stack: Stack) -> None:
    index = stack.services["index"]
    request = b"POST /v1/query HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    watched = _watch(_open(index.url, request + b'{"vectors": [[0.1, ', 20), BODY_TIMEOUT_S + SLACK_S + 5)
    assert {a.status for a in watched} == {408}
    assert all((a.closed_after_s or 1e9) <= BODY_TIMEOUT_S + SLACK_S for a in watched)
    assert index.alive()


@pytest.fixture()
def capped_gateway(stack: Stack) -> Iterator[ServiceProcess]:
    """A second gateway on the same backends serving at most CAP connections."""
    backends = [f"--{name}-url={stack.services[name].url}" for name in ("detector", "embedder", "index")]
    args = [*LIMITS, f"--max-client-connections={CAP}", "--cache-size=0", *backends]
    gateway = start_service("gateway", free_port(), args=args)
    try:
        gateway.wait_ready(60)
        yield gateway
    finally:
        gateway.stop()


def test_over_the_connection_cap_requests_get_json_503_but_probes_pass(capped_gateway: ServiceProcess) -> None:
    gw = capped_gateway
    before = _rejections(gw.url, "too_many_connections")
    attackers = _open(gw.url, _half_upload("/v1/search"), 2 * CAP, pause_s=0.02)
    time.sleep(1.0)
    with ThreadPoolExecutor(1) as pool:
        watching = pool.submit(_watch, attackers, BODY_TIMEOUT_S + SLACK_S + 5)
        time.sleep(0.5)
        probes = {p: httpx.get(gw.url + p, trust_env=False, timeout=10).status_code for p in ("/livez", "/readyz")}
        refused = search(gw.url, PHOTO, k=3)
        watched = watching.result()
    assert probes == {"/livez": 200, "/readyz": 200}
    assert refused.status_code == 503 and set(refused.json()) == {"error"}
    assert refused.json()["error"].startswith("too many open connections")
    assert refused.headers["retry-after"] == "1"
    turned_away = [a for a in watched if a.status == 503]
    held = [a for a in watched if a.status == 408]
    assert len(turned_away) + len(held) == 2 * CAP
    assert 0 < len(held) <= CAP and all((a.closed_after_s or 1e9) < 2 for a in turned_away)
    assert _rejections(gw.url, "too_many_connections") - before == len(turned_away) + 1
    assert search(gw.url, PHOTO, k=3).status_code == 200, "the cap frees up once the attackers are cut"
