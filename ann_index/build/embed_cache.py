"""A local cache of catalog embeddings, so a daily rebuild re-embeds only new and changed images.

A vector is keyed by the sha256 of the image's bytes and scoped by the embedder's sha256 and the crop
mode, so a new model or another crop never reuses a vector. The file is SQLite in WAL mode: the decode
threads look vectors up while the job's thread writes new ones. The cache is an accelerator, never a
source of truth: a cache that cannot be read is moved aside and started afresh, and a row that does
not decode to a vector of the right size counts as a miss.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SCHEMA = "CREATE TABLE IF NOT EXISTS vectors (scope TEXT, key TEXT, vec BLOB, PRIMARY KEY (scope, key)) WITHOUT ROWID"


class EmbeddingCache:
    def __init__(self, path: Path, embedder_sha256: str, crop: str, dim: int) -> None:
        self.path = Path(path)
        self.scope = f"{embedder_sha256}:{crop}"
        self.dim = dim
        self.hits = 0
        self.misses = 0
        self.error: str | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._writer: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._open_or_reset()
        except (OSError, sqlite3.Error) as exc:  # no cache is slower, never wrong: the rebuild goes on
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("embedding cache %s unusable, embedding every image: %s", self.path, self.error)

    def _open_or_reset(self) -> sqlite3.Connection:
        try:
            return self._open_writer()
        except sqlite3.DatabaseError as exc:
            if not self.path.is_file():
                raise
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("embedding cache %s unreadable (%s): moved to %s, starting empty", self.path, exc, aside)
            self.path.replace(aside)
            return self._open_writer()

    def _connect(self) -> sqlite3.Connection:
        # Each thread gets its own connection; check_same_thread is off only so close() can run anywhere.
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        with self._lock:
            self._connections.append(conn)
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        """The job thread's connection; it sets up the file (WAL mode persists, so readers need not)."""
        conn = self._connect()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(SCHEMA)
        conn.commit()
        return conn

    def _lookup(self, key: str) -> np.ndarray | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = self._local.conn = self._connect()
            row = conn.execute("SELECT vec FROM vectors WHERE scope = ? AND key = ?", (self.scope, key)).fetchone()
        except sqlite3.DatabaseError as exc:
            log.warning("embedding cache lookup failed, embedding instead: %s", exc)
            return None
        if row is None or not isinstance(row[0], bytes) or len(row[0]) != 4 * self.dim:
            return None
        return np.frombuffer(row[0], dtype=np.float32).copy()

    def get(self, key: str) -> np.ndarray | None:
        """The cached vector for an image sha256, or None. Safe to call from any thread."""
        vec = self._lookup(key) if self._writer is not None else None
        with self._lock:
            if vec is None:
                self.misses += 1
            else:
                self.hits += 1
        return vec

    def put_many(self, keys: list[str], vectors: np.ndarray) -> None:
        """Store freshly computed vectors; called from the job's thread only."""
        if self._writer is None:
            return
        rows = [(self.scope, k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in zip(keys, vectors, strict=True)]
        try:
            with self._writer:
                self._writer.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)
        except sqlite3.DatabaseError as exc:  # a full disk must not fail the rebuild itself
            log.warning("embedding cache write failed (%d vectors not cached): %s", len(rows), exc)

    def stats(self) -> dict[str, object]:
        out: dict[str, object] = {"path": str(self.path), "hits": self.hits, "misses": self.misses}
        if self.error:
            out["error"] = self.error
        return out

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
