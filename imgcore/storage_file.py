"""file:// object store: a local folder (or a mounted volume) with atomic writes."""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from imgcore.errors import InvalidInput, NotFound, StoreError
from imgcore.storage_base import (
    CHUNK,
    TMP_SUFFIX,
    ByteBudget,
    ChunkCallback,
    ObjectStore,
    atomic_writer,
    check_key,
    check_prefix,
)


def file_uri_to_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise InvalidInput(f"invalid file URI {uri!r}: expected file:///absolute/path")
    return Path(unquote(parts.path))


class FileStore(ObjectStore):
    def __init__(self, uri: str) -> None:
        self.root = file_uri_to_path(uri)
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        path = self._path(key)
        budget = ByteBudget(self.url_of(key), max_bytes)
        try:
            with open(path, "rb") as fh:  # a symlink to /dev/zero ends here too
                return budget.add(fh.read(budget.read_size()))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFound(f"not found: {self.url_of(key)}") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {self.url_of(key)}: {exc}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            with atomic_writer(path) as fh:
                fh.write(data)
        except OSError as exc:
            raise StoreError(f"cannot write {self.url_of(key)}: {exc}") from exc

    def put_new(self, key: str, data: bytes) -> bool:
        # Written whole under a temp name, then hard-linked to the key: link() fails if the name exists,
        # atomically, on local filesystems and on NFS, so no reader sees a partial object and no writer wins twice.
        path = self._path(key)
        staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")  # listings skip it
        try:
            with atomic_writer(staged) as fh:
                fh.write(data)
        except OSError as exc:
            raise StoreError(f"cannot write {self.url_of(key)}: {exc}") from exc
        try:
            os.link(staged, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot create {self.url_of(key)}: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                staged.unlink()

    def put_file(self, key: str, path: Path) -> None:
        try:
            with open(path, "rb") as src, atomic_writer(self._path(key)) as fh:
                shutil.copyfileobj(src, fh, CHUNK)
        except OSError as exc:
            raise StoreError(f"cannot copy {path} to {self.url_of(key)}: {exc}") from exc

    def download(
        self, key: str, dest: Path, *, on_chunk: ChunkCallback | None = None, max_bytes: int | None = None
    ) -> None:
        path = self._path(key)
        budget = ByteBudget(self.url_of(key), max_bytes)
        try:
            # Opened before the temp file exists, so a missing key leaves nothing behind; closed below.
            src = open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFound(f"not found: {self.url_of(key)}") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {self.url_of(key)}: {exc}") from exc
        try:
            with src, atomic_writer(Path(dest)) as fh:
                while block := src.read(CHUNK):
                    fh.write(budget.add(block))
                    if on_chunk is not None:
                        on_chunk(block)
        except OSError as exc:
            raise StoreError(f"cannot download {self.url_of(key)} to {dest}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> builtins.list[str]:
        check_prefix(prefix)
        # Walk only the folder the prefix names, not the whole store.
        start = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not start.is_dir():
            return []
        keys: builtins.list[str] = []
        try:
            for dirpath, _dirs, files in os.walk(start):
                rel_dir = Path(dirpath).relative_to(self.root).as_posix()
                for name in files:
                    if name.endswith(TMP_SUFFIX):
                        continue  # a write in progress (or a crashed one), not an object
                    key = name if rel_dir == "." else f"{rel_dir}/{name}"
                    if key.startswith(prefix):
                        keys.append(key)
        except OSError as exc:
            raise StoreError(f"cannot list {self.url_of(prefix)}: {exc}") from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot delete {self.url_of(key)}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> None:
        if not check_prefix(prefix):
            raise InvalidInput(f"refusing to delete everything in {self.uri}: empty prefix")
        try:
            for key in self.list(prefix):
                (self.root / key).unlink(missing_ok=True)
            self._prune_empty_dirs(prefix)
        except OSError as exc:
            raise StoreError(f"cannot delete {self.url_of(prefix)}*: {exc}") from exc

    def _prune_empty_dirs(self, prefix: str) -> None:
        """Remove folders the deletion emptied, so a later list() or exists() sees nothing left behind."""
        start = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not start.is_dir():
            return
        for dirpath, _dirs, _files in os.walk(start, topdown=False):
            path = Path(dirpath)
            rel = path.relative_to(self.root).as_posix()
            if path == self.root or not (rel + "/").startswith(prefix):
                continue
            # Not empty means it holds keys outside the prefix or a write in progress: keep it.
            with contextlib.suppress(OSError):
                path.rmdir()
