"""Many objects read by full URI, with one HTTP client per host kept open for all of them.

`fetch_uri_bytes` opens a client for each call: right for one catalog file, wrong for a catalog's images.
Building an httpx client costs ~30 ms of CPU (its TLS context) before the first byte, and each fresh client
opens a fresh connection (a TLS handshake per image on an https image host). A rebuild reading 10 000
images from a CDN paid that 10 000 times; through a `UriFetcher` it pays it once per host, and the images
share pooled keep-alive connections. httpx clients are thread-safe, so the decode threads share them.
A file:// image is read through one FileStore per folder; s3:// goes through `fetch_uri_bytes` (S3 clients are
cached there).
"""

from __future__ import annotations

import threading
from types import TracebackType
from urllib.parse import unquote, urlsplit

from imgcore.storage import as_uri, fetch_uri_bytes
from imgcore.storage_file import FileStore
from imgcore.storage_http import HttpStore


class UriFetcher:
    """`fetch(uri)` as `fetch_uri_bytes(uri)`, reusing one HTTP client per scheme and host until `close`."""

    def __init__(self, *, s3_endpoint_url: str | None = None, timeout_s: float = 30.0) -> None:
        self.s3_endpoint_url = s3_endpoint_url
        self.timeout_s = timeout_s
        self._http: dict[str, HttpStore] = {}
        self._files: dict[str, FileStore] = {}
        self._lock = threading.Lock()

    def fetch(self, uri: str, *, max_bytes: int | None = None) -> bytes:
        uri = as_uri(uri)
        folder, _, name = uri.rpartition("/")
        if uri.startswith("file:///") and name and not any(c in uri for c in "?#"):
            # One store per folder: fetch_uri_bytes parses the URI twice and builds a store per image (53 -> 34 us
            # per 112 px catalog PNG; the rebuild's decode thread is its bottleneck, docs/benchmarks.md P4).
            return self._folder(folder).get_bytes(unquote(name), max_bytes=max_bytes)
        parts = urlsplit(uri)
        if parts.scheme.lower() not in ("http", "https"):
            return fetch_uri_bytes(
                uri, s3_endpoint_url=self.s3_endpoint_url, timeout_s=self.timeout_s, max_bytes=max_bytes
            )
        return self._client(f"{parts.scheme.lower()}://{parts.netloc}").get_url(uri, max_bytes=max_bytes)

    def _folder(self, folder_uri: str) -> FileStore:
        store = self._files.get(folder_uri)
        if store is None:
            with self._lock:
                store = self._files.setdefault(folder_uri, FileStore(folder_uri + "/"))
        return store

    def _client(self, origin: str) -> HttpStore:
        with self._lock:
            store = self._http.get(origin)
            if store is None:
                store = self._http[origin] = HttpStore(origin, timeout_s=self.timeout_s)
            return store

    def close(self) -> None:
        with self._lock:
            stores, self._http = list(self._http.values()), {}
        for store in stores:
            store.close()

    def __enter__(self) -> UriFetcher:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
