"""The gateway's HTTP client for its backends: aiohttp's pooled keep-alive connections (C parser), behind
the three names `Backends` needs: `Reply`, `ConnectionFailed` and `ConnectTimeout`.

It replaced a hand-written httptools client that spent ~0.26 ms less CPU per call: under 2 % of a search's
CPU and no measurable throughput (docs/benchmarks.md, `bench/http_client.py`), not worth owning a client.
aiohttp does not resend a POST whose pooled connection the server had just closed; `Backends.call` does
(every backend call is idempotent), and idle connections are dropped before uvicorn's keep-alive timeout
(5 s) so that race is rare.
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


@dataclass
class Reply:
    """A whole response."""

    status_code: int
    content: bytes


class HttpPool:
    """Keep-alive connections per host:port; one session, opened on first use inside the event loop."""

    def __init__(self, connect_timeout_s: float = 5.0) -> None:
        self.connect_timeout_s = connect_timeout_s
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
        content: bytes = b"",
        headers: dict[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Reply:
        """One request; ConnectionFailed when no whole response could be had, ConnectTimeout when no connection."""
        if tracing_enabled():  # the backend's server span joins this request's trace
            headers = dict(headers or {})
            inject(headers)
        try:
            async with self._open().request(method, url, data=content, headers=headers, params=params) as resp:
                return Reply(resp.status, await resp.read())
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectTimeout(f"no connection to {url} within {self.connect_timeout_s:g}s") from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ConnectionFailed(f"{url}: {exc}") from exc

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._session is not None:
            await self._session.close()
