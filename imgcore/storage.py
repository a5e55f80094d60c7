"""Object storage behind one interface: file://, s3:// and read-only http(s)://.

The one place that dispatches on a URI's scheme. Models and indexes are pulled through here at startup
instead of being baked into container images.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from imgcore.errors import InvalidInput
from imgcore.storage_base import ChunkCallback, ObjectStore, check_key
from imgcore.storage_file import FileStore, file_uri_to_path

__all__ = ["ChunkCallback", "ObjectStore", "as_uri", "check_key", "fetch_uri_bytes", "open_store", "resolve_uri"]

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def as_uri(uri_or_path: str) -> str:
    """Local paths are accepted wherever a URI is and mean file:// (a relative one: from the working folder)."""
    if not uri_or_path or _SCHEME_RE.match(uri_or_path):
        return uri_or_path
    return Path(uri_or_path).resolve().as_uri()


def open_store(uri: str, *, s3_endpoint_url: str | None = None, timeout_s: float = 30.0) -> ObjectStore:
    """Open the store rooted at `uri`: file:///abs/dir, s3://bucket/prefix or http(s)://host/base."""
    uri = as_uri(uri)
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "file":
        return FileStore(uri)
    if scheme == "s3":
        # Imported lazily: boto3 takes ~0.4 s to import and most processes only read local files.
        from imgcore.storage_s3 import S3Store

        return S3Store(uri, endpoint_url=s3_endpoint_url, timeout_s=timeout_s)
    if scheme in ("http", "https"):
        from imgcore.storage_http import HttpStore

        return HttpStore(uri, timeout_s=timeout_s)
    raise InvalidInput(f"unsupported store URI {uri!r}: expected file://, s3:// or http(s)://")


def _normalize(path: str, original: str) -> str:
    """Resolve '.' and '..' in an absolute URI path; refuse to climb above the host or bucket."""
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if not out:
                raise InvalidInput(f"reference {original!r} climbs above the root of its store")
            out.pop()
        else:
            out.append(seg)
    return "/" + "/".join(out)


def resolve_uri(base_uri: str, ref: str) -> str:
    """Turn a reference from a catalog or manifest into an absolute URI.

    `base_uri` is a folder (the catalog's root, no file name). `ref` is either an absolute URI
    (returned unchanged), a path relative to that folder ("images/a.jpg", "./a.jpg", "../shared/a.jpg"),
    or a root-relative path ("/images/a.jpg": from the host, the bucket, or the filesystem root).
    """
    if not ref or not ref.strip():
        raise InvalidInput("empty reference")
    if _SCHEME_RE.match(ref):
        return ref
    base = urlsplit(as_uri(base_uri))
    if not base.scheme:
        raise InvalidInput(f"base {base_uri!r} is not a URI or an absolute path")
    path = ref if ref.startswith("/") else f"{base.path.rstrip('/')}/{ref}"
    return f"{base.scheme}://{base.netloc}{_normalize(path, ref)}"


def fetch_uri_bytes(uri: str, *, s3_endpoint_url: str | None = None, timeout_s: float = 30.0) -> bytes:
    """Read one object named by its full URI (file, s3 or http(s))."""
    uri = as_uri(uri)
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        from imgcore.storage_http import HttpStore

        http = HttpStore(uri.rsplit("/", 1)[0], timeout_s=timeout_s)
        try:
            return http.get_url(uri)  # the full URL, so query strings (presigned URLs) survive
        finally:
            http.close()
    if scheme == "s3":
        bucket, _, key = uri.partition("://")[2].partition("/")
        store = open_store(f"s3://{bucket}", s3_endpoint_url=s3_endpoint_url, timeout_s=timeout_s)
    elif scheme == "file":
        path = file_uri_to_path(uri)
        key = path.name
        store = FileStore(path.parent.as_uri())
    else:
        raise InvalidInput(f"unsupported URI {uri!r}: expected file://, s3:// or http(s)://")
    if not key:
        raise InvalidInput(f"URI {uri!r} names no object")
    with store:
        return store.get_bytes(key)
