"""Hardening against bad input: the whole bad-input corpus on every image endpoint, rejection metrics by
reason, and the upload size and pixel limits enforced while the body streams in (real processes).

`tests/services/gateway/test_inputs.py` already checks the corpus' bad files on every endpoint and the odd-but-valid
ones through the gateway; here every file goes to every service, with readiness and metrics after each.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack import ServiceProcess, free_port, start_service
from tests.helpers import Stack, shared_stack
from tests.helpers.http import metric_value
from tests.helpers.paths import DATA

pytestmark = pytest.mark.stack

BAD = DATA / "bad"
CORPUS: dict[str, dict[str, str]] = json.loads((BAD / "corpus.json").read_text())
ENDPOINTS = {"detector": "/v1/detect", "embedder": "/v1/embed", "gateway": "/v1/search"}
SMALL_BODY = 64 * 1024  # --max-upload-bytes of the services started with small limits
SMALL_PIXELS = 10_000  # --max-pixels of the same


@pytest.fixture(scope="module")
def stack() -> Stack:
    return shared_stack()


def _rejections(base: str) -> dict[str, float]:
    text = httpx.get(base + "/metrics", trust_env=False).text
    reasons = {spec.get("reason", "") for spec in CORPUS.values()} - {""}
    return {r: metric_value(text, "imgsearch_rejections_total", reason=r) for r in reasons}


def assert_json_error(resp: httpx.Response) -> str:
    """A refusal is a JSON object with only `error`, and no Python internals leak into it."""
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    for leak in ("Traceback", 'File "', "site-packages", "/work/", '.py"'):
        assert leak not in body["error"], body
    return str(body["error"])


@pytest.mark.parametrize("service", sorted(ENDPOINTS))
def test_every_corpus_file_gets_its_expected_status_and_the_service_stays_ready(stack: Stack, service: str) -> None:
    base = stack.url(service)
    before = _rejections(base)
    expected: dict[str, int] = {}
    with httpx.Client(trust_env=False, timeout=60) as http:
        for name, spec in sorted(CORPUS.items()):
            resp = http.post(base + ENDPOINTS[service], files={"image": (Path(name).name, (BAD / name).read_bytes())})
            if spec["expect"] == "200":
                assert resp.status_code == 200, (service, name, resp.text[:300])
            else:
                assert 400 <= resp.status_code < 500, (service, name, resp.status_code, resp.text[:300])
                assert_json_error(resp)
                expected[spec["reason"]] = expected.get(spec["reason"], 0) + 1
            ready = http.get(base + "/readyz")
            assert ready.status_code == 200, (service, name, ready.text)
    after = _rejections(base)
    # each refusal is counted once, under the reason the corpus names for that file
    assert {r: after[r] - before[r] for r in after} == {r: float(expected.get(r, 0)) for r in after}


# --------------------------------------------------------------------------- small limits, real processes


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Iterator[dict[str, ServiceProcess]]:
    """Detector, embedder, index and gateway with a 64 KiB body limit and a 10 000 pixel limit."""
    limits = ["--max-upload-bytes", str(SMALL_BODY), "--max-pixels", str(SMALL_PIXELS)]
    args = {
        "detector": [*stack.args["detector"], *limits],
        "embedder": [*stack.args["embedder"], *limits],
        "index": [*stack.args["index"], *limits, "--local-dir", str(stack.root / "index-cache-limited")],
        "gateway": [*stack.args["gateway"], *limits],
    }
    procs = {
        name: start_service(name, free_port(), args=argv, log_path=stack.root / "logs" / f"{name}-limited.log")
        for name, argv in args.items()
    }
    try:
        for proc in procs.values():
            proc.wait_ready(120)
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


def _http_response(sock: socket.socket, timeout_s: float = 10.0) -> tuple[int, dict[str, Any]]:
    """Read one HTTP/1.1 response (status, JSON body) from a raw socket."""
    sock.setblocking(True)
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])}
    length = int(headers.get(b"content-length", b"0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ")[1]), json.loads(body[:length] or b"{}")


MULTIPART = "multipart/form-data; boundary=xyz"
MULTIPART_START = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n\xff\xd8\xff'


def _post_chunked_until_answered(
    url: str,
    path: str,
    planned_bytes: int,
    content_type: str = MULTIPART,
    start: bytes = MULTIPART_START,
    filler: bytes = b"\0" * 16384,
) -> tuple[int, dict[str, Any], int]:
    """POST `start` then `filler` over and over with chunked transfer encoding (no Content-Length), and stop
    as soon as the server answers. Returns (status, body, bytes of the body sent before the answer)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        sent = 0
        payload = filler
        chunk = start + payload
        while sent < planned_bytes:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break  # the server closed or stopped reading: its answer is waiting
            sent += len(chunk)
            chunk = payload
        else:
            sock.sendall(b"0\r\n\r\n")  # all sent and no answer yet: end the body and see what comes back
        status, body = _http_response(sock, timeout_s=60)
        return status, body, sent
    finally:
        sock.close()


@pytest.mark.parametrize("service", sorted(ENDPOINTS))
def test_streamed_upload_over_the_limit_is_refused_with_413_before_it_is_all_sent(
    limited: dict[str, ServiceProcess], service: str
) -> None:
    planned = 64 * 1024 * 1024  # 1000x the limit: a server that buffered it all would answer after 64 MiB
    t0 = time.perf_counter()
    status, body, sent = _post_chunked_until_answered(limited[service].url, ENDPOINTS[service], planned)
    assert status == 413, body
    assert "exceeds" in body["error"]
    # the answer came while the client was still sending: at most the limit plus loopback socket buffers
    assert sent < 16 * 1024 * 1024, sent
    assert time.perf_counter() - t0 < 10
    assert limited[service].is_ready()


def test_json_query_body_over_the_limit_is_refused_while_streaming(limited: dict[str, ServiceProcess]) -> None:
    """The index service's JSON endpoint has the same body limit as the image endpoints."""
    row = b"[" + b"0.125," * 127 + b"0.125],"
    status, body, sent = _post_chunked_until_answered(
        limited["index"].url, "/v1/query", 32 * 1024 * 1024, "application/json", b'{"k": 3, "vectors": [', row * 20
    )
    assert status == 413, body
    assert sent < 16 * 1024 * 1024, sent
    assert limited["index"].is_ready()


BODY_ENDPOINTS = {**{s: (p, MULTIPART) for s, p in ENDPOINTS.items()}, "index": ("/v1/query", "application/json")}


@pytest.mark.parametrize("service", sorted(BODY_ENDPOINTS))
def test_declared_content_length_over_the_limit_is_refused_without_reading_the_body(
    limited: dict[str, ServiceProcess], service: str
) -> None:
    host, port = limited[service].url.removeprefix("http://").split(":")
    path, content_type = BODY_ENDPOINTS[service]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {50 * 1024 * 1024}\r\n"
            f"Content-Type: {content_type}\r\n\r\n".encode()
        )  # and not one byte of the announced 50 MiB
        status, body = _http_response(sock)
    assert status == 413 and "exceeds" in body["error"]


@pytest.mark.parametrize("service", sorted(ENDPOINTS))
def test_pixel_limit_refuses_a_valid_image_with_too_many_pixels(
    limited: dict[str, ServiceProcess], service: str
) -> None:
    url = limited[service].url + ENDPOINTS[service]
    small = (BAD / "valid" / "photo.bmp").read_bytes()  # 96x64 = 6144 pixels
    wide = (BAD / "valid" / "wide_4000x40.png").read_bytes()  # 160 000 pixels, 1.3 kB
    assert httpx.post(url, files={"image": ("ok.bmp", small)}, trust_env=False, timeout=60).status_code == 200
    before = _rejections(limited[service].url)["too_many_pixels"]
    resp = httpx.post(url, files={"image": ("wide.png", wide)}, trust_env=False, timeout=60)
    assert resp.status_code == 413
    assert "pixels" in assert_json_error(resp)
    assert _rejections(limited[service].url)["too_many_pixels"] == before + 1


def test_raw_pixel_fast_path_refuses_dimensions_over_the_pixel_limit(limited: dict[str, ServiceProcess]) -> None:
    headers = {"content-type": "application/x-imgsearch-rgb", "x-image-height": "200", "x-image-width": "200"}
    for service in ("detector", "embedder"):
        url = limited[service].url + ENDPOINTS[service]
        resp = httpx.post(url, content=bytes(200 * 200 * 3), headers=headers, trust_env=False, timeout=30)
        assert resp.status_code == 413, (service, resp.text)
        assert_json_error(resp)
