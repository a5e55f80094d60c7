"""http(s):// object store: read-only (a static file server, a CDN, an air-gapped mirror)."""

from __future__ import annotations

import builtins
from pathlib import Path
from urllib.parse import quote

import httpx

from imgcore.errors import InvalidInput, NotFound, StoreError
from imgcore.storage_base import CHUNK, ByteBudget, ChunkCallback, ObjectStore, atomic_writer, check_key


class HttpStore(ObjectStore):
    read_only = True

    def __init__(self, uri: str, *, timeout_s: float = 30.0) -> None:
        if not uri.startswith(("http://", "https://")):
            raise InvalidInput(f"invalid HTTP URI {uri!r}: expected http(s)://host/base")
        self.uri = uri.rstrip("/")
        # The read timeout applies per network read, so a big file on a slow but live link still finishes.
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=True)

    def close(self) -> None:
        self._client.close()

    def _url(self, key: str) -> str:
        return f"{self.uri}/{quote(check_key(key))}"

    @staticmethod
    def _check(resp: httpx.Response, method: str, url: str) -> None:
        if resp.status_code in (404, 410):
            raise NotFound(f"not found: {url}")
        if not resp.is_success:
            raise StoreError(f"{method} {url} failed: HTTP {resp.status_code}")

    def get_url(self, url: str, *, max_bytes: int | None = None) -> bytes:
        """GET a full URL (used by fetch_uri_bytes, so query strings such as presigned URLs survive)."""
        budget = ByteBudget(url, max_bytes)
        try:
            with self._client.stream("GET", url) as resp:
                self._check(resp, "GET", url)
                return b"".join(budget.add(block) for block in resp.iter_bytes(CHUNK))
        except httpx.HTTPError as exc:
            raise StoreError(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc

    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        return self.get_url(self._url(key), max_bytes=max_bytes)

    def put_bytes(self, key: str, data: bytes) -> None:
        raise self._read_only(f"put {key!r}")

    def put_file(self, key: str, path: Path) -> None:
        raise self._read_only(f"put {key!r}")

    def download(
        self, key: str, dest: Path, *, on_chunk: ChunkCallback | None = None, max_bytes: int | None = None
    ) -> None:
        url = self._url(key)
        budget = ByteBudget(url, max_bytes)
        try:
            with self._client.stream("GET", url) as resp:
                self._check(resp, "GET", url)
                # httpx raises on a body shorter than Content-Length, so a cut connection never
                # reaches the rename inside atomic_writer.
                with atomic_writer(Path(dest)) as fh:
                    for block in resp.iter_bytes(CHUNK):
                        fh.write(budget.add(block))
                        if on_chunk is not None:
                            on_chunk(block)
        except httpx.HTTPError as exc:
            raise StoreError(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot download {url} to {dest}: {exc}") from exc

    def exists(self, key: str) -> bool:
        url = self._url(key)
        try:
            resp = self._client.head(url)
        except httpx.HTTPError as exc:
            raise StoreError(f"HEAD {url} failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code in (404, 410):
            return False
        self._check(resp, "HEAD", url)
        return True

    listable = False

    def list(self, prefix: str = "") -> builtins.list[str]:
        raise StoreError(f"cannot list {self.uri}: HTTP stores have no listing; use a manifest or CURRENT file")

    def delete_prefix(self, prefix: str) -> None:
        raise self._read_only(f"delete {prefix!r}")
