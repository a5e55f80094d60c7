"""The gateway's HTTP client for its backends: aiohttp's pooled keep-alive connections (C parser), behind
the three names `Backends` needs: `Reply`, `ConnectionFailed` and `ConnectTimeout`.

It replaced a hand-written httptools client that spent ~0.26 ms less CPU per call: under 2 % of a search's
CPU and no measurable throughput (docs/benchmarks.md, `bench/http_client.py`), not worth owning a client.
aiohttp does not resend a POST whose pooled connection the server had just closed; `Backends.call` does
(every backend call is idempotent), and idle connections are dropped before uvicorn's keep-alive timeout
(5 s) so that race is rare.

Every answer is read against a byte cap (`max_answer_bytes`): a backend that declares or streams more is
that call's failure (`AnswerTooLarge`), after at most the cap was held, so no backend can grow the gateway
past its pod's memory limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from opentelemetry.propagate import inject

from services.common.tracing import tracing_enabled

# Below uvicorn's default keep-alive (5 s): the client, not the server, ends an idle connection.
IDLE_S = 4.0


class ConnectionFailed(ConnectionError):
    """The connection could not be opened, or broke before a whole response arrived."""


class ConnectTimeout(TimeoutError):
    """No connection within the connect timeout (a stalled or overloaded host)."""


class AnswerTooLarge(Exception):
    """The answer's body is longer than the cap (declared or streamed): not retried, not read further."""


@dataclass
class Reply:
    """A whole response."""

    status_code: int
    content: bytes


class HttpPool:
    """Keep-alive connections per host:port; one session, opened on first use inside the event loop."""

    def __init__(self, connect_timeout_s: float = 5.0, max_answer_bytes: int = 8 * 1024 * 1024) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.max_answer_bytes = max_answer_bytes
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No pool limit here: Backends bounds the calls in flight per backend itself.
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=IDLE_S)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | memoryview = b"",
        headers: dict[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Reply:
        """One request; ConnectionFailed when no whole response could be had, ConnectTimeout when no connection,
        AnswerTooLarge past the byte cap."""
        if tracing_enabled():  # the backend's server span joins this request's trace
            headers = dict(headers or {})
            inject(headers)
        try:
            async with self._open().request(method, url, data=content, headers=headers, params=params) as resp:
                return Reply(resp.status, await self._read(url, resp))
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectTimeout(f"no connection to {url} within {self.connect_timeout_s:g}s") from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ConnectionFailed(f"{url}: {exc}") from exc

    async def _read(self, url: str, resp: aiohttp.ClientResponse) -> bytes:
        cap = self.max_answer_bytes
        if resp.content_length is not None and resp.content_length > cap:
            resp.close()  # the rest is never read: the connection is not reused
            raise AnswerTooLarge(f"{url}: answer of {resp.content_length} bytes, over the cap of {cap}")
        if resp.content_length is not None:  # the parser stops at the declared length
            return await resp.read()
        body = bytearray()  # chunked or up to the close: counted as it streams
        while chunk := await resp.content.read(64 * 1024):
            body += chunk
            if len(body) > cap:
                resp.close()
                raise AnswerTooLarge(f"{url}: answer longer than the cap of {cap} bytes")
        return bytes(body)

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._session is not None:
            await self._session.close()
