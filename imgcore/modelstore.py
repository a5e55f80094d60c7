"""Model store: pull model folders (card.json + model.onnx) into a verified local cache at startup.

Models live in object storage, never in container images. A fetch reads the small card first, serves a
cache entry that still hashes to the card's sha256, and otherwise downloads model.onnx while hashing it.
A cache entry folder appears only by an atomic rename of a fully verified staging folder, so a crash or a
cut connection can never leave a partial or unverified model.onnx where a server would load it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from imgcore.card import CARD_NAME, MODEL_NAME, SHA_RE, parse_card, sha256_file
from imgcore.errors import ChecksumMismatch, InvalidInput, NotFound, StoreError
from imgcore.modelstore_publish import publish_models
from imgcore.storage import ObjectStore, open_store

__all__ = ["ModelStore", "parse_card", "publish_models"]

log = logging.getLogger("imgcore.modelstore")

T = TypeVar("T")
STAGING_PREFIX = ".staging-"
# Staging folders older than this belong to a process that died mid-download.
STALE_STAGING_S = 6 * 3600


def _check_pin(sha256: str) -> str:
    pin = sha256.strip().lower()
    if not SHA_RE.match(pin):
        raise InvalidInput(f"sha256 pin {sha256!r} is not 64 hex digits")
    return pin


class ModelStore:
    """Fetch model folders from a primary URI and ordered mirrors into `cache_dir/<name>-<sha[:12]>/`.

    `retries` is the number of extra attempts per object and source after a StoreError (5xx, timeout,
    connection error), with exponential backoff plus jitter. NotFound and ChecksumMismatch are not
    retried on the same source: they move on to the next mirror.
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        mirrors: Sequence[str] = (),
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 30.0,
        s3_endpoint_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.mirrors = [m.rstrip("/") for m in mirrors]
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.s3_endpoint_url = s3_endpoint_url
        self._sleep = sleep

    def sources(self, uri: str) -> list[str]:
        """The primary URI, then `<mirror>/<last path segment of uri>` for each mirror, without repeats."""
        uri = uri.rstrip("/")
        last = uri.rsplit("/", 1)[-1]
        out = [uri]
        for mirror in self.mirrors:
            candidate = f"{mirror}/{last}"
            if candidate not in out:
                out.append(candidate)
        return out

    def fetch(self, uri: str, sha256: str | None = None) -> Path:
        """Return a local folder holding card.json and a model.onnx verified against the card (and pin)."""
        pin = _check_pin(sha256) if sha256 else None
        if pin is not None:
            # A pinned model already in the cache needs no network at all (air-gapped restarts).
            cached = self._find_pinned(pin)
            if cached is not None:
                log.info("model %s: cache hit %s (pinned sha256, no network)", uri, cached)
                return cached
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._sweep_stale_staging()
        errors: list[tuple[str, Exception]] = []
        for src in self.sources(uri):
            try:
                return self._fetch_from(src, pin)
            except (StoreError, NotFound) as exc:
                log.warning("model source %s failed: %s", src, exc)
                errors.append((src, exc))
        detail = "; ".join(f"[{src}] {type(exc).__name__}: {exc}" for src, exc in errors)
        message = f"could not fetch model {uri} from any of {len(errors)} source(s): {detail}"
        if all(isinstance(exc, ChecksumMismatch) for _, exc in errors):
            raise ChecksumMismatch(message)
        raise StoreError(message)

    pull = fetch

    def _fetch_from(self, src: str, pin: str | None) -> Path:
        with open_store(src, s3_endpoint_url=self.s3_endpoint_url, timeout_s=self.timeout_s) as store:
            raw = self._attempt(lambda: store.get_bytes(CARD_NAME), f"{src}/{CARD_NAME}")
            card = parse_card(raw, f"{src}/{CARD_NAME}")
            sha = card["sha256"]
            if pin is not None and sha != pin:
                raise ChecksumMismatch(f"{src}/{CARD_NAME} declares sha256 {sha}, but the pinned sha256 is {pin}")
            entry = self.cache_dir / f"{card['name']}-{sha[:12]}"
            if self._entry_ok(entry, sha):
                log.info("model %s: cache hit %s", src, entry)
                return entry
            return self._download(store, src, entry, sha, raw)

    def _download(self, store: ObjectStore, src: str, entry: Path, sha: str, card_raw: bytes) -> Path:
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{entry.name}-", dir=self.cache_dir))
        try:
            target = staging / MODEL_NAME

            def attempt() -> str:
                digest = hashlib.sha256()  # fresh per attempt: a retry starts the file from byte 0
                store.download(MODEL_NAME, target, on_chunk=digest.update)
                return digest.hexdigest()

            got = self._attempt(attempt, f"{src}/{MODEL_NAME}")
            if got != sha:
                raise ChecksumMismatch(f"{src}/{MODEL_NAME} has sha256 {got}, but its card declares {sha}")
            (staging / CARD_NAME).write_bytes(card_raw)
            self._install(staging, entry, sha)
            log.info("model %s: verified sha256 %s, cached at %s", src, sha, entry)
            return entry
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful rename

    def _install(self, staging: Path, entry: Path, sha: str) -> None:
        try:
            os.rename(staging, entry)
        except OSError:
            # Another process sharing the cache (a pod on the same volume) may have installed it first.
            if self._entry_ok(entry, sha):
                return
            try:
                os.rename(staging, entry)
            except OSError as exc:
                raise StoreError(f"cannot install model into cache {entry}: {exc}") from exc

    def _attempt(self, fn: Callable[[], T], what: str) -> T:
        total = self.retries + 1
        for n in range(total):
            log.info("fetching %s (attempt %d/%d)", what, n + 1, total)
            try:
                return fn()
            except ChecksumMismatch:
                raise
            except StoreError as exc:
                if n + 1 == total:
                    log.warning("fetching %s failed (attempt %d/%d), giving up: %s", what, n + 1, total, exc)
                    raise
                delay = self.backoff_s * 2**n + random.uniform(0, self.backoff_s / 4)
                log.warning("fetching %s failed (attempt %d/%d): %s; retrying in %.2fs", what, n + 1, total, exc, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _entry_ok(self, entry: Path, sha: str) -> bool:
        """True if the entry verifies; a corrupt entry is deleted so that the caller fetches it once more."""
        if not entry.exists():
            return False
        model = entry / MODEL_NAME
        try:
            got = sha256_file(model) if model.is_file() and (entry / CARD_NAME).is_file() else None
        except OSError:
            got = None
        if got == sha:
            return True
        log.warning("corrupt cache entry %s (sha256 %s, expected %s): deleting and fetching again", entry, got, sha)
        shutil.rmtree(entry, ignore_errors=True)
        return False

    def _find_pinned(self, pin: str) -> Path | None:
        if not self.cache_dir.is_dir():
            return None
        for entry in sorted(self.cache_dir.glob(f"*-{pin[:12]}")):
            try:
                card = parse_card((entry / CARD_NAME).read_bytes(), str(entry))
            except (OSError, StoreError):
                continue
            if card["sha256"] == pin and entry.name == f"{card['name']}-{pin[:12]}" and self._entry_ok(entry, pin):
                return entry
        return None

    def _sweep_stale_staging(self) -> None:
        cutoff = time.time() - STALE_STAGING_S
        for path in self.cache_dir.glob(f"{STAGING_PREFIX}*"):
            try:
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                continue
