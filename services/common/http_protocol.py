"""Slow and greedy clients, the server's side: uvicorn's httptools protocol with the deadlines it lacks.

uvicorn (0.54) times out only idle keep-alive connections: a client that connects and sends nothing, or half
its headers, or half its body, holds its connection (and what it sent) for ever. This protocol adds:
- a header deadline, `header_timeout_s` from the connection opening or a request's first byte to the end of
  its headers; past it the connection is closed, with a JSON 408 when a request had begun;
- a body deadline, `body_timeout_s` from the headers to the last body byte, written into the ASGI scope
  (`BODY_DEADLINE`) for the app to answer with a JSON 408 (`services.common.client_limits`); this protocol
  closes the connection `BACKSTOP_S` later if the app did not (a body that no route reads);
- the open connection count and the cap, in the scope (`CONNECTIONS`) for the app's 503;
- a bound on a request's URL and headers (`max_header_bytes` together, `max_headers` lines): past either,
  a JSON 431 and the connection closed, before more of them is held (httptools itself has no bound);
- JSON bodies for the framing errors uvicorn answers in plain text (400 for a request httptools cannot parse).

uvicorn's own `limit_concurrency` is left off: it answers text/plain and refuses the health probes as well.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.common.client_limits import BODY_DEADLINE, CONNECTIONS
from services.common.errors import error_response
from services.common.metrics import REJECTIONS

# The app answers a late body first; this much later the connection is closed whatever the app did.
BACKSTOP_S = 1.0
# After an error answer to an unparsable request, what the client still sends is read and dropped this
# long before the close: closing with unread bytes sends a reset, which can destroy the answer in flight.
LINGER_S = 2.0

log = logging.getLogger("imgsearch.errors")


@dataclass(frozen=True)
class ClientLimits:
    """The deadlines and the connection cap of one server (from the service's settings)."""

    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100


class HeadersTooLarge(Exception):
    """Raised from a parser callback: httptools stops parsing and uvicorn answers its error response."""


def _raw(response: Response) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, for when no ASGI request exists yet."""
    lines = [f"HTTP/1.1 {response.status_code} {HTTPStatus(response.status_code).phrase}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + bytes(response.body)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a body deadline and the connection count."""

    limits: ClientLimits  # set on the subclass `guarded_protocol` makes
    _deadline: asyncio.TimerHandle | None = None
    _requested = False  # a request has begun on this connection (a 408 can be understood)
    _header_bytes = 0  # of the request being parsed: its URL and header lines
    _header_lines = 0
    _too_large: str | None = None  # why the headers were refused (answered 431, not 400)
    _lingering = False  # answered and closing: what arrives is dropped

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._requested = True
        self._header_bytes = self._header_lines = 0
        self._arm(self.limits.header_timeout_s, self._headers_late)

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value), 1)
        super().on_header(name, value)

    def _count(self, nbytes: int, lines: int) -> None:
        self._header_bytes += nbytes
        self._header_lines += lines
        if self._header_bytes > self.limits.max_header_bytes:
            self._too_large = f"request URL and headers exceed {self.limits.max_header_bytes} bytes"
        elif self._header_lines > self.limits.max_headers:
            self._too_large = f"request has more than {self.limits.max_headers} header lines"
        else:
            return
        raise HeadersTooLarge(self._too_large)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request httptools refused, as JSON (431 for headers over the bounds)."""
        if self._too_large is not None:
            status, reason, msg = 431, "headers_too_large", self._too_large
        else:
            status, reason = 400, "bad_request"
        self.transport.write(_raw(error_response(status, reason, msg)))  # counted and logged there
        self._disarm()
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._lingering:
            super().data_received(data)

    def on_headers_complete(self) -> None:
        scope = cast(dict[str, Any], self.scope)
        scope[CONNECTIONS] = (len(self.connections), self.limits.max_connections)
        scope[BODY_DEADLINE] = self.loop.time() + self.limits.body_timeout_s
        self._arm(self.limits.body_timeout_s + BACKSTOP_S, self._body_late)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _headers_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        message = f"request headers not received within {self.limits.header_timeout_s:g} s"
        response = error_response(408, "header_timeout", message)
        # Not to a client that never sent a byte (a browser's preconnect), nor into a response in progress.
        if self._requested and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(_raw(response))
        self.transport.close()

    def _body_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        REJECTIONS.labels(reason="body_timeout").inc()
        log.warning("rejected reason=body_timeout: connection closed, body not received in time")
        self.transport.close()


def guarded_protocol(limits: ClientLimits) -> type[GuardedHttpProtocol]:
    """The protocol class to give `uvicorn.Config(http=...)` (uvicorn makes one instance per connection)."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})
