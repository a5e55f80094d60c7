"""s3:// object store (AWS S3 or any S3-compatible server: MinIO, Ceph, moto) via boto3."""

from __future__ import annotations

import builtins
import os
import threading
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from imgcore.errors import ImgSearchError, InvalidInput, NotFound, StoreError
from imgcore.storage_base import CHUNK, ByteBudget, ChunkCallback, ObjectStore, atomic_writer, check_key, check_prefix

_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_clients: dict[tuple[str | None, float, int], Any] = {}
_clients_lock = threading.Lock()


def _client(endpoint_url: str | None, timeout_s: float, max_attempts: int) -> Any:
    """One client per configuration: building one costs ~50 ms, and boto3 clients are thread-safe."""
    key = (endpoint_url, timeout_s, max_attempts)
    with _clients_lock:
        if key not in _clients:
            config = Config(
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
                # botocore's own retries absorb throttling and transient 5xx inside a single call.
                retries={"max_attempts": max_attempts, "mode": "standard"},
                # S3-compatible servers on a plain host:port need path-style addressing.
                s3={"addressing_style": "path"} if endpoint_url else None,
            )
            # A fresh session per client: the default session is not safe to share across threads.
            _clients[key] = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        return _clients[key]


class S3Store(ObjectStore):
    page_size = 1000  # list_objects_v2 page size; tests lower it to exercise pagination
    delete_batch = 1000  # DeleteObjects accepts at most 1000 keys per call

    def __init__(
        self, uri: str, *, endpoint_url: str | None = None, timeout_s: float = 30.0, max_attempts: int = 3
    ) -> None:
        scheme, _, rest = uri.partition("://")
        bucket, _, prefix = rest.partition("/")
        if scheme != "s3" or not bucket:
            raise InvalidInput(f"invalid S3 URI {uri!r}: expected s3://bucket[/prefix]")
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.uri = f"s3://{bucket}/{prefix}".rstrip("/")
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self._s3 = _client(self.endpoint_url, timeout_s, max_attempts)

    def _error(self, exc: Exception, action: str, key: str) -> ImgSearchError:
        where = self.url_of(key) + (f" (endpoint {self.endpoint_url})" if self.endpoint_url else "")
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code in _NOT_FOUND_CODES:
                return NotFound(f"not found: {where}")
            if code == "NoSuchBucket":
                return StoreError(f"cannot {action} {where}: bucket {self.bucket!r} does not exist")
            return StoreError(f"cannot {action} {where}: {code} {err.get('Message', '')}".rstrip())
        return StoreError(f"cannot {action} {where}: {exc}")

    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        budget = ByteBudget(self.url_of(key), max_bytes)
        try:
            resp = self._s3.get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
            body = resp["Body"]
            try:
                data: bytes = budget.add(body.read(budget.read_size()) if max_bytes is not None else body.read())
            finally:
                body.close()
            return data
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "get", key) from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        # A single PUT is atomic in S3: readers see the old object or the new one, never a mix.
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self.prefix + check_key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "put", key) from exc

    def put_new(self, key: str, data: bytes) -> bool:
        # A conditional PUT (If-None-Match: *; AWS S3 since 2024, MinIO, moto): the server refuses it with 412
        # when the key exists, and with 409 when another conditional PUT of the key is completing meanwhile.
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self.prefix + check_key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return False
            raise self._error(exc, "put", key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, "put", key) from exc

    def put_file(self, key: str, path: Path) -> None:
        # upload_file switches to multipart for big files (indexes); the object appears only on completion.
        try:
            self._s3.upload_file(
                str(path), self.bucket, self.prefix + check_key(key), Config=TransferConfig(use_threads=False)
            )
        except (BotoCoreError, ClientError, Boto3Error, OSError) as exc:
            raise self._error(exc, f"upload {path} to", key) from exc

    def download(
        self, key: str, dest: Path, *, on_chunk: ChunkCallback | None = None, max_bytes: int | None = None
    ) -> None:
        budget = ByteBudget(self.url_of(key), max_bytes)
        try:
            resp = self._s3.get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
            body = resp["Body"]
            expected = int(resp.get("ContentLength", -1))
            got = 0
            with body, atomic_writer(Path(dest)) as fh:
                for block in body.iter_chunks(CHUNK):
                    fh.write(budget.add(block))
                    got += len(block)
                    if on_chunk is not None:
                        on_chunk(block)
                if expected >= 0 and got != expected:
                    raise StoreError(f"short read of {self.url_of(key)}: {got} of {expected} bytes")
        except (BotoCoreError, ClientError, OSError) as exc:
            raise self._error(exc, "download", key) from exc

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
            return True
        except (BotoCoreError, ClientError) as exc:
            err = self._error(exc, "check", key)
            if isinstance(err, NotFound):
                return False
            raise err from exc

    def list(self, prefix: str = "") -> builtins.list[str]:
        check_prefix(prefix)
        keys: builtins.list[str] = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix, PaginationConfig={"PageSize": self.page_size}
            )
            for page in pages:
                keys.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "list", prefix) from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "delete", key) from exc

    def delete_prefix(self, prefix: str) -> None:
        if not check_prefix(prefix):
            raise InvalidInput(f"refusing to delete everything in {self.uri}: empty prefix")
        keys = self.list(prefix)
        for start in range(0, len(keys), self.delete_batch):
            batch = keys[start : start + self.delete_batch]
            try:
                resp = self._s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self.prefix + k} for k in batch], "Quiet": True},
                )
            except (BotoCoreError, ClientError) as exc:
                raise self._error(exc, "delete", prefix) from exc
            failed = resp.get("Errors") or []
            if failed:
                sample = ", ".join(f"{e.get('Key')}: {e.get('Code')}" for e in failed[:3])
                raise StoreError(f"cannot delete {len(failed)} objects under {self.url_of(prefix)}: {sample}")
