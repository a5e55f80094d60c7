"""Object storage behind one interface: file://, s3:// and read-only http(s)://.

The one place that dispatches on a URI's scheme. Models and indexes are pulled through here at startup
instead of being baked into container images.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


def _relative_segments(ref: str) -> list[str]:
    """The segments of a relative reference that stays inside its base folder; InvalidInput otherwise.

    Stores decode percent-escapes (a file path, an S3 key, an HTTP server), so a segment is judged by
    what it decodes to: "%2e%2e" is "..", "%2f" a separator, "%00" a byte no file name may hold.
    """
    segments: list[str] = []
    for seg in ref.split("/"):
        plain = unquote(seg)
        if plain in ("..", ".") and seg not in ("", ".") or "/" in plain or any(ord(c) < 32 for c in plain):
            raise InvalidInput(
                f"reference {ref!r} is not a path inside the catalog's folder ('..', percent-encoded dots or "
                "separators and control characters are refused)"
            )
        if seg not in ("", "."):
            segments.append(seg)
    if not segments:
        raise InvalidInput(f"reference {ref!r} names no file")
    return segments


def resolve_uri(base_uri: str, ref: str, *, allow_absolute: bool = False) -> str:
    """Turn a reference from a catalog into an absolute URI.

    `base_uri` is a folder (the catalog's root, no file name). `ref` is a path inside that folder
    ("images/a.jpg", "./a.jpg"); a catalog is data from elsewhere, so a ref that leaves the folder ("..",
    percent-encoded dots or separators, a backslash) is refused. Only with `allow_absolute` (the catalog's
    owner says so) may a ref be an absolute URI (returned unchanged) or root-relative ("/images/a.jpg":
    from the host, the bucket, or the filesystem root).
    """
    if not ref or not ref.strip():
        raise InvalidInput("empty reference")
    if "\\" in ref or "%5c" in ref.lower():
        raise InvalidInput(f"reference {ref!r} holds a backslash: use '/' between folders")
    absolute = bool(_SCHEME_RE.match(ref)) or ref.startswith("/")
    if absolute and not allow_absolute:
        raise InvalidInput(f"reference {ref!r} is absolute; this catalog allows only paths inside its folder")
    if _SCHEME_RE.match(ref):
        return ref
    base = urlsplit(as_uri(base_uri))
    if not base.scheme:
        raise InvalidInput(f"base {base_uri!r} is not a URI or an absolute path")
    if absolute:
        return f"{base.scheme}://{base.netloc}{_normalize(ref, ref)}"
    folder = _normalize(base.path, base_uri).rstrip("/")
    return f"{base.scheme}://{base.netloc}{folder}/{'/'.join(_relative_segments(ref))}"


def fetch_uri_bytes(
    uri: str, *, s3_endpoint_url: str | None = None, timeout_s: float = 30.0, max_bytes: int | None = None
) -> bytes:
    """Read one object named by its full URI (file, s3 or http(s)); ObjectTooLarge past `max_bytes`."""
    uri = as_uri(uri)
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        from imgcore.storage_http import HttpStore

        http = HttpStore(uri.rsplit("/", 1)[0], timeout_s=timeout_s)
        try:
            return http.get_url(uri, max_bytes=max_bytes)  # the full URL, so query strings (presigned URLs) survive
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
        return store.get_bytes(key, max_bytes=max_bytes)
