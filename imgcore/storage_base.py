"""The ObjectStore interface shared by every backend, plus key checks and the atomic local writer."""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from imgcore.errors import InvalidInput, ObjectTooLarge, StoreError

ChunkCallback = Callable[[bytes], None]
CHUNK = 1 << 20
# Temp files carry this suffix so that a FileStore listing can skip writes in progress.
TMP_SUFFIX = ".imgsearch-tmp"
_SAFE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_safe_name(name: object, max_length: int = 128) -> bool:
    """Whether `name` can be one file or folder name on every backend: letters, digits, '.', '_' and '-',
    starting with a letter or digit (so never hidden, never '.' or '..', never a path)."""
    return isinstance(name, str) and len(name) <= max_length and _SAFE_NAME_RE.fullmatch(name) is not None


def check_key(key: str) -> str:
    """Refuse keys that could escape the store root or that map to different objects per backend."""
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key:
        raise InvalidInput(f"invalid object key {key!r}: must be a non-empty relative path")
    if any(seg in ("", ".", "..") for seg in key.split("/")):
        raise InvalidInput(f"invalid object key {key!r}: empty, '.' or '..' path segment")
    return key


def check_prefix(prefix: str) -> str:
    """Like check_key, but "" and a trailing "/" are allowed (listing prefixes are plain string prefixes)."""
    if prefix == "":
        return prefix
    check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


class ByteBudget:
    """Counts the bytes of one read and stops it past `max_bytes` (None: no bound), before they are kept."""

    def __init__(self, where: str, max_bytes: int | None) -> None:
        self.where, self.max_bytes, self.seen = where, max_bytes, 0

    def add(self, block: bytes) -> bytes:
        self.seen += len(block)
        if self.max_bytes is not None and self.seen > self.max_bytes:
            raise ObjectTooLarge(f"{self.where} is larger than {self.max_bytes} bytes: not read past them")
        return block

    def read_size(self) -> int:
        """How much one read may ask for: one byte past the bound shows it is exceeded (-1: everything)."""
        return -1 if self.max_bytes is None else self.max_bytes + 1


@contextlib.contextmanager
def atomic_writer(dest: Path) -> Iterator[BinaryIO]:
    """Write to a temp file in dest's folder and os.replace it over dest only when the block succeeds.

    The temp file is in the same folder so the rename never crosses a filesystem: readers see either
    the old file or the whole new one, never a partial write, even if the process dies mid-way.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=TMP_SUFFIX)
    try:
        # mkstemp creates 0600; stores and caches are often shared with other users/processes.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class ObjectStore(ABC):
    """A flat namespace of keys ("a/b/c") under one root URI. Missing keys raise NotFound."""

    uri: str
    read_only: bool = False

    @abstractmethod
    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; ObjectTooLarge past `max_bytes`, with at most one byte more read."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None: ...

    def put_new(self, key: str, data: bytes) -> bool:
        """Write `data` at `key` only if no object is there yet, atomically; False when one already is.

        What lets writers that do not know of each other (two appliers of catalog changes) claim a key
        without overwriting each other. Backends that cannot do it refuse rather than fall back to a race.
        """
        raise StoreError(f"{self.uri} cannot create an object only if it is absent")

    @abstractmethod
    def download(
        self, key: str, dest: Path, *, on_chunk: ChunkCallback | None = None, max_bytes: int | None = None
    ) -> None:
        """Copy an object to dest atomically; `on_chunk` sees every byte (e.g. to hash while streaming);
        ObjectTooLarge (nothing left at dest) once more than `max_bytes` arrived."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    # Whether `list` works: an HTTP store has no listing (readers then find objects by their names).
    listable: bool = True

    @abstractmethod
    def list(self, prefix: str = "") -> builtins.list[str]:
        """Sorted keys, relative to the root, that start with `prefix` (a string prefix, as in S3)."""

    def delete(self, key: str) -> None:
        """Delete one object (no other key, whatever it starts with); nothing happens when it is absent."""
        raise self._read_only(f"delete {key!r}")

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Delete every key starting with `prefix`; an empty prefix is refused (it would wipe the store)."""

    def url_of(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""
        return None  # local and S3 stores hold nothing per instance (S3 clients are shared)

    def _read_only(self, action: str) -> StoreError:
        return StoreError(f"cannot {action} on {self.uri}: this store is read-only")

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
