"""Request headers are bounded on every service (issue 33, finding 11), and framing errors answer JSON.

Before: 16 MiB of small headers were read whole and answered 200; four such requests at once took the
gateway from 455 to 1,050 MiB; a request httptools could not parse got a plain-text 400.
"""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from tests.helpers import shared_stack
from tests.helpers.memory import peak_mib, reset_peak

pytestmark = pytest.mark.stack
SERVICES = ("gateway", "detector", "embedder", "index")
MIB = 1024 * 1024


def _exchange(url: str, request: bytes, timeout_s: float = 30.0) -> tuple[int, dict[str, object], bytes]:
    """Send `request` on a raw connection (from a thread, so the answer is read as soon as it comes) and read
    until the server closes; (status, JSON body or {}, raw head)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:

        def send() -> None:
            try:
                sock.sendall(request)
            except OSError:  # the server answered and closed before the end: what a bound does
                pass

        sender = threading.Thread(target=send)
        sender.start()
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        sender.join()
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {}
    return status, parsed, head


def _headers(n: int, value: bytes = b"v") -> bytes:
    return b"".join(b"X-Pad-%d: %s\r\n" % (i, value) for i in range(n))


def _request(headers: bytes) -> bytes:
    return b"GET /livez HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n"


@pytest.mark.parametrize("service", SERVICES)
def test_headers_over_the_bounds_get_json_431_and_ordinary_ones_pass(service: str) -> None:
    url = shared_stack().url(service)
    status, _, _ = _exchange(url, _request(_headers(50)))
    assert status == 200
    for request in (_request(_headers(101)), _request(b"X-Big: " + b"a" * 70_000 + b"\r\n")):
        status, body, head = _exchange(url, request)
        assert status == 431, head
        assert "error" in body and b"application/json" in head.lower(), (head, body)


@pytest.mark.parametrize("service", SERVICES)
def test_an_unparsable_request_gets_a_json_400(service: str) -> None:
    status, body, head = _exchange(shared_stack().url(service), b"GET /livez HTTP/1.1\r\nHost t\r\n\r\n")
    assert status == 400, head
    assert "error" in body, (head, body)


def test_four_clients_sending_16_mib_of_headers_do_not_grow_the_gateway() -> None:
    stack = shared_stack()
    pid = stack.pids()["gateway"]
    request = _request(_headers(16 * MIB // 16))  # ~1 M header lines of 16 bytes
    before = reset_peak(pid)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _exchange(stack.gateway_url, request), range(4)))
    grown = peak_mib(pid) - before
    assert grown < 32, f"gateway peak grew {grown:.0f} MiB from {before:.0f} (before the bound: +595 MiB)"
    assert all(status == 431 for status, _, _ in answers), [a[2] for a in answers]
    status, _, _ = _exchange(stack.gateway_url, _request(b""))
    assert status == 200  # still serving
