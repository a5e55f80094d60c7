"""The index being served, and its hot swap.

A reload downloads a version, verifies it (manifest, checksums, embedder binding), opens it, runs a
self-test query and only then swaps the reference atomically. Queries already running finish on the old
reader (its `close()` waits for them); a failed reload leaves the old reader serving. A version refused
for what it holds is remembered with its manifest's sha256: it is not downloaded and verified again until
its manifest changes or an operator forces a reload.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ann_index.serving.checks import built_at, drop_refused, prune_local, self_test
from ann_index.serving.fresh_view import FreshView
from ann_index.serving.partition_sync import sync_partition
from ann_index.serving.reader import IndexReader
from ann_index.version.publish import manifest_sha256, read_current
from imgcore.errors import ChecksumMismatch, ImgSearchError, IndexMismatch, ModelNotReady
from imgcore.storage import ObjectStore, open_store
from services.common.malloc import return_freed_memory
from services.common.metrics import INDEX_AGE_SECONDS, INDEX_INFO, INDEX_ITEMS, INDEX_RELOADS
from services.common.settings import IndexSettings
from services.index.changes import ChangeFollower

log = logging.getLogger("imgsearch.index")
T = TypeVar("T")


@dataclass
class Refusal:
    """A version that failed for what it holds (not for store trouble): the same manifest fails again."""

    version: str
    manifest_sha256: str
    reason: str
    error: str
    skipped: int = 0  # later reloads that found it unchanged and did not load it again


class AlreadyRefused(IndexMismatch):
    """The version and manifest were refused before: nothing was downloaded."""


class IndexVersionGone(ImgSearchError, status=409, reason="index_version_gone"):
    """A query pinned to an index version this server no longer (or not yet) holds."""


class IndexHolder:
    """Owns the current `IndexReader` and replaces it safely."""

    def __init__(self, settings: IndexSettings) -> None:
        return_freed_memory()
        self.settings = settings
        self.reader: IndexReader | None = None
        self.last_error: str | None = None
        self.failed_version: str | None = None
        self.refusal: Refusal | None = None
        self.built_at: float | None = None
        self._lock = asyncio.Lock()
        self._store: ObjectStore | None = None
        # Catalog changes since the build (issue 17); a partition replica (issue 16) keeps its own upserts.
        self.changes = ChangeFollower(settings.partition)
        INDEX_AGE_SECONDS.set_function(lambda: time.time() - self.built_at if self.built_at else 0.0)

    def store(self) -> ObjectStore:
        """The index store (opened lazily: boto3 clients are slow to make)."""
        if self._store is None:
            s = self.settings
            self._store = open_store(s.index_uri, s3_endpoint_url=s.store.s3_endpoint_url, timeout_s=s.store.timeout_s)
        return self._store

    def use(self, fn: Callable[[FreshView], T], version: str | None = None) -> T:
        """Run `fn` on the current reader (with the changes applied since its build); if a swap closed that
        reader under us, run it on the new one.

        `version` pins the answer to one index version (a partitioned gateway's scatter-gather, issue 16).
        """
        while True:
            reader = self.pick(version)
            if reader is None:
                raise ModelNotReady("no index loaded yet" + (f": {self.last_error}" if self.last_error else ""))
            try:
                return fn(self.changes.view(reader))
            except ModelNotReady:
                if self.reader is reader:
                    raise

    def _prepare(self, version: str, force: bool) -> IndexReader:
        sha = manifest_sha256(self.store(), version)
        known = self.refusal
        if not force and known is not None and (known.version, known.manifest_sha256) == (version, sha):
            known.skipped += 1
            raise AlreadyRefused(f"index {version} was refused before: {known.error}", reason=known.reason)
        try:
            return self._open(version)
        except IndexMismatch as exc:
            self.refusal = Refusal(version, sha, exc.reason, f"{type(exc).__name__}: {exc}")
            drop_refused(self.settings.local_dir, version, self.held_versions())
            raise

    def _open(self, version: str) -> IndexReader:
        s = self.settings
        try:
            local = sync_partition(self.store(), version, s.local_dir, s.partition)
        except ChecksumMismatch as exc:  # files that do not verify: the version is bad, not the store
            raise IndexMismatch(f"index {version} refused: {exc.message}", reason="checksum") from exc
        reader = IndexReader.open(local, embedder_sha256=s.embedder_sha256, dim=s.dim, prefault=s.prefault)
        try:
            self_test(reader)
            self.changes.replay(self.store(), reader)  # not ready without the changes the store holds
        except BaseException:
            reader.close()
            raise
        return reader

    async def reload(self, version: str | None = None, *, force: bool = False) -> dict[str, Any]:
        """Load `version` (default: the store's CURRENT) and swap it in; raise (old one kept) if it fails."""
        async with self._lock:
            target = version or await asyncio.to_thread(read_current, self.store())
            if target is None:
                raise ModelNotReady(f"no index published at {self.settings.index_uri} yet", reason="no_index")
            old = self.reader
            if old is not None and old.version == target and not force:
                INDEX_RELOADS.labels(result="unchanged").inc()
                return {"version": target, "previous": target, "changed": False}
            t0 = time.perf_counter()
            try:
                new = await asyncio.to_thread(self._prepare, target, force)
            except AlreadyRefused as exc:
                INDEX_RELOADS.labels(result="skipped").inc()
                self.failed_version, self.last_error = target, exc.message
                log.debug("index %s: manifest unchanged since it was refused; not loaded again", target)
                raise
            except Exception as exc:
                INDEX_RELOADS.labels(result="failed").inc()
                self.failed_version, self.last_error = target, f"{type(exc).__name__}: {exc}"
                log.error("index %s refused; still serving %s: %s", target, old and old.version, exc)
                raise
            self.keep_answering(old)  # before the swap: a query on another thread never finds neither
            self.reader, self.failed_version, self.last_error = new, None, None
            self.built_at = built_at(new.manifest)
            if old is not None:  # in multiprocess metrics (pre-forked workers) clear() leaves the old value
                INDEX_INFO.labels(version=old.version).set(0)
            INDEX_INFO.clear()
            INDEX_INFO.labels(version=new.version).set(1)
            INDEX_ITEMS.set(new.count)
            INDEX_RELOADS.labels(result="swapped").inc()
            log.info("serving index %s (%d items) after %.2fs", new.version, new.count, time.perf_counter() - t0)
            if old is not None and old is not new:
                await self.retire(old)
            await asyncio.to_thread(prune_local, self.settings.local_dir, self.settings.keep_versions, new.version)
            return {"version": new.version, "previous": old.version if old else None, "changed": True}

    def held_versions(self) -> set[str]:
        """Versions whose readers are open here (their local copies must stay)."""
        return {self.reader.version} if self.reader is not None else set()

    def pick(self, version: str | None) -> IndexReader | None:
        """The reader that answers for `version` (None: the current one)."""
        reader = self.reader
        if version is not None and reader is not None and reader.version != version:
            raise IndexVersionGone(f"index {version} is not served here (serving {reader.version})")
        return reader

    def keep_answering(self, old: IndexReader | None) -> None:
        """Called just before `old` stops being the current reader (a partition keeps it answering)."""

    async def retire(self, old: IndexReader) -> None:
        """A swapped-out reader: closed at once (a partition keeps it until the gateways moved on)."""
        await asyncio.to_thread(old.close)  # waits for queries still running on it

    async def poll_forever(self) -> None:
        """Load at start, then follow changes of CURRENT every `poll_seconds`.

        Only a *change* of CURRENT triggers a reload, so a version pinned through /admin/reload stays until
        the next publish, and a refused version is not retried; a store failure is retried at the next poll.
        """
        seen: str | None = None
        while True:
            try:
                current = await asyncio.to_thread(read_current, self.store())
                if current is None:
                    self.last_error = f"no index published at {self.settings.index_uri} yet"
                elif current != seen:
                    seen = current
                    await self.reload(current)
            except IndexMismatch:
                pass  # a bad version (logged by reload): wait for the next publish
            except Exception as exc:  # store trouble: keep serving, try again next time
                log.warning("index poll failed: %s", exc)
                self.last_error = f"{type(exc).__name__}: {exc}"
                seen = None
            poll = self.settings.poll_seconds
            if self.reader is not None and poll <= 0:
                return
            await asyncio.sleep(poll if self.reader is not None else min(poll, 2.0) if poll > 0 else 2.0)

    async def follow_changes(self) -> None:
        """Apply the served version's new change objects every `changes_poll_seconds` (until cancelled)."""
        await self.changes.follow(self.store, lambda: self.reader, self.settings.changes_poll_seconds)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details) for /readyz: the version, size, categories and embedder binding."""
        reader = self.reader
        if reader is None:
            return False, {"error": self.last_error, **({"refused": self._refused()} if self.failed_version else {})}
        emb = reader.manifest.get("embedder", {})
        details: dict[str, Any] = {
            "index": {
                "version": reader.version,
                "count": reader.count,
                "dim": reader.dim,
                "categories": reader.categories,
                "embedder": {k: emb.get(k) for k in ("name", "version", "sha256", "dim", "metric")},
                "kinds": reader.manifest.get("kinds"),  # item kinds -> categories, from the catalog (#15)
            }
        }
        details["index"]["changes"] = self.changes.details(reader)
        if self.failed_version:
            details["refused"] = self._refused()
        return True, details

    def _refused(self) -> dict[str, Any]:
        known = self.refusal if self.refusal and self.refusal.version == self.failed_version else None
        return {
            "version": self.failed_version,
            "error": known.error if known else self.last_error,
            "reason": known.reason if known else "store",
            "skipped_reloads": known.skipped if known else 0,
        }

    def close(self) -> None:
        """Close the reader and the store at shutdown."""
        if self.reader is not None:
            self.reader.close()
        if self._store is not None:
            self._store.close()
