"""Slow and greedy clients, the app's side: a body past its deadline gets 408, a connection over the cap 503.

The server (`services.common.http_protocol`, what `imgsearch serve` runs) knows when a request's headers
arrived and how many connections are open; it writes both into the ASGI scope under the keys below. This
middleware turns them into JSON errors inside the request context (request id, access log, metrics). Under
another server the keys are absent and it does nothing.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgcore.errors import ImgSearchError
from services.common.errors import error_response

# Event-loop time by which the whole request body must have arrived.
BODY_DEADLINE = "imgsearch.body_deadline"
# (open connections, cap) when the request's headers arrived.
CONNECTIONS = "imgsearch.connections"
# Cheap and needed most during an attack: a probe refused would pull a healthy pod or restart it.
SPARED_PATHS = frozenset({"/livez", "/readyz", "/metrics"})


class BodyTimeout(ImgSearchError, status=408, reason="body_timeout"):
    """The client did not send the whole request body in time (stalled or too slow)."""


def _rid(scope: Scope) -> str | None:
    rid = scope.get("request_id")
    return rid if isinstance(rid, str) else None


def _over_cap(scope: Scope) -> tuple[int, int] | None:
    connections = scope.get(CONNECTIONS)
    if connections is None:
        return None
    open_now, cap = connections
    if open_now <= cap or (scope.get("method") == "GET" and scope.get("path") in SPARED_PATHS):
        return None
    return open_now, cap


class ClientLimitsMiddleware:
    """Pure ASGI, inside the request context: the scope's body deadline and connection cap, as JSON errors.

    A body read that passes the deadline raises `BodyTimeout` out of `receive()`: route handlers map it to
    408 through the one error mapping; where it escapes (a middleware reading the body) it is answered here.
    Either way the answer says `connection: close`, since the rest of that body will never be read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only http scopes from the guarded protocol carry the keys; every other scope passes through.
        deadline = scope.get(BODY_DEADLINE)
        if (over := _over_cap(scope)) is not None:
            await self._refuse(scope, receive, send, *over)
        elif isinstance(deadline, float):
            await self._with_deadline(scope, receive, send, deadline)
        else:
            await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, open_now: int, cap: int) -> None:
        message = f"too many open connections ({open_now} > {cap}), retry later"
        response = error_response(503, "too_many_connections", message, _rid(scope))
        response.headers["connection"] = "close"
        response.headers["retry-after"] = "1"
        await response(scope, receive, send)

    async def _with_deadline(self, scope: Scope, receive: Receive, send: Send, deadline: float) -> None:
        body_done = timed_out = started = False

        async def receive_by_deadline() -> Message:
            nonlocal body_done, timed_out
            if body_done:  # later reads wait for a disconnect, which has no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                raise BodyTimeout("request body not received in time") from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_closing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if timed_out:
                    MutableHeaders(scope=message)["connection"] = "close"
            await send(message)

        try:
            await self.app(scope, receive_by_deadline, send_closing)
        except BodyTimeout as exc:
            if started:
                raise
            await error_response(exc.status, exc.reason, exc.message, _rid(scope))(scope, receive, send_closing)
