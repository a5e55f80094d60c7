"""The gateway's lean HTTP/1.1 client (`services.gateway.http1`) against a real uvicorn server."""

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

from services.gateway.http1 import ConnectionFailed, ConnectTimeout, Http1Pool
from services.stack import free_port
from tests.helpers.wait import wait_until


async def echo(request: Request) -> Response:
    body = await request.body()
    head = f"{request.method} {request.url.query} {request.headers.get('x-test', '')} {len(body)}"
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


def test_request_with_params_headers_body_and_status(server: str) -> None:
    async def go() -> None:
        pool = Http1Pool()
        reply = await pool.request(
            "POST",
            server + "/echo",
            content=b"x" * 100_000,
            headers={"x-test": "yes"},
            params={"a": "1", "b": "[1, 2]"},
        )
        assert reply.status_code == 200
        assert reply.content.startswith(b"POST a=1&b=%5B1%2C+2%5D yes 100000|xxxx")
        assert reply.headers["content-length"] == str(len(reply.content))
        missing = await pool.request("GET", server + "/echo", params={"status": "404"})
        assert missing.status_code == 404
        assert (await pool.request("GET", server + "/chunked")).content == b"one,two,three"
        await pool.close()

    asyncio.run(go())


def test_connections_are_reused_and_concurrent_calls_get_their_own(server: str) -> None:
    async def go() -> None:
        pool = Http1Pool()
        replies = await asyncio.gather(*(pool.request("POST", server + "/echo", content=b"%d" % i) for i in range(20)))
        assert [r.content.rsplit(b"|", 1)[1] for r in replies] == [b"%d" % i for i in range(20)]
        idle = pool._idle[("http", "127.0.0.1", int(server.rsplit(":", 1)[1]))]
        assert len(idle) == 20
        first = idle[-1]
        await pool.request("GET", server + "/echo")
        assert idle[-1] is first  # last in, first out: the warmest connection
        await pool.close()

    asyncio.run(go())


def test_a_connection_closed_by_the_server_while_idle_is_replaced_transparently(server: str) -> None:
    async def go() -> None:
        pool = Http1Pool()
        await pool.request("GET", server + "/echo")
        await asyncio.sleep(2.0)  # past the server's keep-alive timeout (1 s): it closes the connection
        assert (await pool.request("POST", server + "/echo", content=b"again")).status_code == 200
        await pool.close()

    asyncio.run(go())


def test_refused_connection_fails_fast() -> None:
    async def go() -> None:
        pool = Http1Pool(connect_timeout_s=0.2)
        with pytest.raises(ConnectionFailed):
            await pool.request("GET", f"http://127.0.0.1:{free_port()}/")

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
            pool = Http1Pool(connect_timeout_s=0.3)
            t0 = time.perf_counter()
            with pytest.raises(ConnectTimeout):
                await asyncio.wait_for(pool.request("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/"), 5)
            assert time.perf_counter() - t0 < 2

        asyncio.run(go())
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool(server: str) -> None:
    async def go() -> None:
        pool = Http1Pool()
        task = asyncio.create_task(pool.request("POST", server + "/echo", content=b"z" * 5_000_000))
        await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert all(c.closed for q in pool._idle.values() for c in q) or not any(pool._idle.values())
        assert (await pool.request("POST", server + "/echo", content=b"ok")).content.endswith(b"|ok")
        await pool.close()

    asyncio.run(go())
