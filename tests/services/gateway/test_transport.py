"""The gateway's HTTP client to its backends (`services.gateway.transport`) against a real uvicorn server:
what it sends, and which failure becomes which error."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from services.gateway.transport import ConnectionFailed, ConnectTimeout, HttpPool
from services.stack import free_port
from tests.helpers.wait import wait_until


async def echo(request: Request) -> Response:
    body = await request.body()
    port = request.client.port if request.client else 0
    head = f"{request.method} {request.url.query} {request.headers.get('x-test', '')} {len(body)} {port}"
    return Response(head.encode() + b"|" + body[:16], status_code=int(request.query_params.get("status", "200")))


async def chunked(request: Request) -> StreamingResponse:
    async def parts() -> object:
        for part in (b"one,", b"two,", b"three"):
            yield part

    return StreamingResponse(parts())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    app = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST"]), Route("/chunked", chunked)])
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=1)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_until(lambda: srv.started, 10, interval_s=0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(5)


def _client_port(content: bytes) -> str:
    return content.split(b"|", 1)[0].rsplit(b" ", 1)[1].decode()


def test_request_with_params_headers_body_and_status(server: str) -> None:
    async def go() -> None:
        pool = HttpPool()
        reply = await pool.request(
            "POST",
            server + "/echo",
            content=b"x" * 100_000,
            headers={"x-test": "yes"},
            params={"a": "1", "b": "[1, 2]"},
        )
        assert reply.status_code == 200
        assert reply.content.startswith(b"POST a=1&b=%5B1,+2%5D yes 100000 ")
        assert reply.content.endswith(b"|" + b"x" * 16)
        missing = await pool.request("GET", server + "/echo", params={"status": "404"})
        assert missing.status_code == 404
        assert (await pool.request("GET", server + "/chunked")).content == b"one,two,three"
        await pool.close()

    asyncio.run(go())


def test_a_connection_is_kept_alive_and_replaced_once_the_server_closed_it(server: str) -> None:
    async def go() -> None:
        pool = HttpPool()
        first = _client_port((await pool.request("GET", server + "/echo")).content)
        assert _client_port((await pool.request("GET", server + "/echo")).content) == first
        await asyncio.sleep(2.0)  # past the server's keep-alive timeout (1 s): it closes the connection
        again = await pool.request("POST", server + "/echo", content=b"again")
        assert again.status_code == 200 and _client_port(again.content) != first
        await pool.close()

    asyncio.run(go())


def test_refused_connection_fails_fast() -> None:
    async def go() -> None:
        pool = HttpPool(connect_timeout_s=0.2)
        t0 = time.perf_counter()
        with pytest.raises(ConnectionFailed):
            await pool.request("GET", f"http://127.0.0.1:{free_port()}/")
        assert time.perf_counter() - t0 < 0.5
        await pool.close()

    asyncio.run(go())


def test_connect_timeout_ends_a_connect_that_hangs() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: once its queue is full, further SYNs are dropped and connects hang
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)

        async def go() -> None:
            pool = HttpPool(connect_timeout_s=0.3)
            t0 = time.perf_counter()
            with pytest.raises(ConnectTimeout):
                await asyncio.wait_for(pool.request("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/"), 5)
            assert time.perf_counter() - t0 < 2
            await pool.close()

        asyncio.run(go())
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_cancelled_request_leaves_the_pool_usable(server: str) -> None:
    async def go() -> None:
        pool = HttpPool()
        task = asyncio.create_task(pool.request("POST", server + "/echo", content=b"z" * 5_000_000))
        await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await pool.request("POST", server + "/echo", content=b"ok")).content.endswith(b"|ok")
        await pool.close()

    asyncio.run(go())


def test_a_server_that_closes_mid_answer_is_a_connection_failure() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def half_answer() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        conn.close()

    thread = threading.Thread(target=half_answer, daemon=True)
    thread.start()

    async def go() -> None:
        pool = HttpPool()
        with pytest.raises(ConnectionFailed):
            await pool.request("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/")
        await pool.close()

    try:
        asyncio.run(go())
    finally:
        thread.join(5)
        listener.close()
