"""ItemStore: one version's item lookup — meta.sqlite rows by annoy id or item id, and the item thumbnails.

Split out of `IndexReader` (which keeps the vectors and the annoy files): everything here is keyed by annoy
id and shares one read-only SQLite connection, so the connection, its lock and the thumbnail file that
validates against it open and close together.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ann_index.thumbs import ThumbFile, no_thumbnails
from imgcore.errors import IndexMismatch, NotFound

Row = tuple[str, str, str, str, str]  # item_id, category, title, image, attrs (JSON)
_COLUMNS = "aid, item_id, category, title, image, attrs"


def open_meta(path: Path, count: int) -> sqlite3.Connection:
    """Read-only, immutable (no locks: the file never changes); refuse one that is not this index's."""
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True, check_same_thread=False)
    try:
        rows = db.execute("SELECT COUNT(*), MIN(aid), MAX(aid) FROM items").fetchone()
    except sqlite3.DatabaseError as exc:
        db.close()
        raise IndexMismatch(f"{path}: metadata store is unreadable: {exc}", reason="meta") from exc
    if tuple(rows) != (count, 0, count - 1):
        db.close()
        raise IndexMismatch(f"{path}: metadata has {rows[0]} rows, the manifest {count}", reason="meta")
    return db


class ItemStore:
    """Rows of meta.sqlite and (when the version has them) thumbnails; thread-safe, `close()` once."""

    def __init__(self, meta_path: Path, thumbs_path: Path | None, count: int, version: str) -> None:
        self.version = version
        self._db = open_meta(meta_path, count)
        # A version built before thumbnails has none: its item images are a 404, not a failed load.
        try:
            self._thumbs = ThumbFile(thumbs_path, self._db, count) if thumbs_path is not None else None
        except IndexMismatch:
            self._db.close()
            raise
        self._lock = threading.Lock()  # one connection shared by the query threads

    def rows(self, aids: list[int]) -> dict[int, Row]:
        if not aids:
            return {}
        marks = ",".join("?" * len(aids))
        sql = f"SELECT {_COLUMNS} FROM items WHERE aid IN ({marks})"
        with self._lock:
            return {r[0]: tuple(r[1:]) for r in self._db.execute(sql, aids)}

    def filter_rows(self) -> list[tuple[str, str, str]]:
        """(item_id, category, attrs JSON) of every row in annoy-id order: what `Columns` is built from."""
        with self._lock:
            return list(self._db.execute("SELECT item_id, category, attrs FROM items ORDER BY aid"))

    def find(self, item_id: str) -> tuple[int, Row]:
        """The first annoy id of an item and its row; NotFound for an item this version does not hold."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM items WHERE item_id = ? ORDER BY aid LIMIT 1", (item_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"item {item_id!r} is not in index {self.version}", reason="unknown_item")
        return int(row[0]), tuple(row[1:])

    def thumbnail(self, aid: int) -> tuple[bytes, str]:
        if self._thumbs is None:
            raise no_thumbnails(self.version)
        return self._thumbs.read(aid)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._thumbs is not None:
            self._thumbs.close()
