"""Item thumbnails: made by the rebuild from the image it already decodes, packed into one file per version.

`thumbs.bin` holds every row's encoded thumbnail back to back in annoy-id order; meta.sqlite's `thumbs`
table gives each row's (offset, length, media type). The file is listed with its sha256 in the manifest
like every other file, so the item image endpoint serves bytes the index verified, and never fetches the
catalog's image URLs at request time (a moved or hostile image host cannot reach the serving path).
"""

from __future__ import annotations

import io
import os
import sqlite3
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from imgcore.errors import IndexMismatch, NotFound
from imgcore.index_wire import thumbnail_media_type as media_type

THUMBS_NAME = "thumbs.bin"
MAX_SIDE = 256
MEDIA_TYPES = ("image/webp", "image/jpeg", "image/png")  # PNG: a reused catalog image (ann_index.build.thumb_reuse)
ThumbFormat = Literal["jpeg", "webp"]
_JPEG_QUALITY = 85
_WEBP_QUALITY = 80
_WEBP_METHOD = 2


def make_thumbnail(image: np.ndarray, max_side: int = MAX_SIDE, fmt: ThumbFormat = "jpeg") -> bytes:
    """A JPEG (or WebP) of the RGB `image` whose longer side is at most `max_side` (never enlarged).

    JPEG by default: libjpeg-turbo encodes a thumbnail in a twelfth of the CPU of libwebp (0.05 vs 0.59 ms
    for a 112 px catalog image, 0.15 vs ~3 ms at 256 px) for ~1.4x the bytes, and the rebuild makes one
    for every catalog image on the cores the embedder needs (docs/benchmarks.md, P4). WebP for stores that
    pay for bytes rather than CPU. Neither writes metadata, so the same pixels give the same bytes.
    """
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1:
        # Area averaging: half the CPU of PIL's bicubic thumbnail on a 768 px photo, and no aliasing.
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if fmt == "jpeg":
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
        )
        if not ok:
            raise ValueError(f"could not encode a {width}x{height} thumbnail")
        return buf.tobytes()
    out = io.BytesIO()
    # Method 2: half the encoding CPU of the default 4 for 5 % more bytes.
    Image.fromarray(image).save(out, format="WEBP", quality=_WEBP_QUALITY, method=_WEBP_METHOD)
    return out.getvalue()


class ThumbPack:
    """Encoded thumbnails of rows, in row order, in one buffer (what embedding hands to the builder)."""

    def __init__(self, blob: bytes | bytearray = b"", lengths: Sequence[int] = ()) -> None:
        if any(n < 0 for n in lengths) or sum(lengths) != len(blob):
            raise ValueError(f"thumbnail lengths add up to {sum(lengths)}, the buffer has {len(blob)} bytes")
        self._blob = bytearray(blob)
        self._lengths = [int(n) for n in lengths]
        self._starts = list(accumulate(self._lengths, initial=0))[:-1]

    def add(self, data: bytes) -> None:
        self._starts.append(len(self._blob))
        self._lengths.append(len(data))
        self._blob += data

    def __len__(self) -> int:
        return len(self._lengths)

    def __getitem__(self, i: int) -> bytes:
        return bytes(self._blob[self._starts[i] : self._starts[i] + self._lengths[i]])

    @classmethod
    def gather(cls, packs: Sequence[ThumbPack], positions: Sequence[int] | None = None) -> ThumbPack:
        """The rows at `positions` of the packs laid end to end (all rows when None), in that order; one copy
        of the thumbnails, not two (the merge of a sharded build holds every shard's already)."""
        starts = list(accumulate((len(pack) for pack in packs), initial=0))
        wanted = range(starts[-1]) if positions is None else positions
        out = cls()
        for pos in wanted:
            shard = bisect_right(starts, int(pos)) - 1
            out.add(packs[shard][int(pos) - starts[shard]])
        return out

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 buffer, int64 lengths): how a shard file stores the pack."""
        return np.frombuffer(bytes(self._blob), dtype=np.uint8), np.asarray(self._lengths, dtype=np.int64)

    @property
    def nbytes(self) -> int:
        return len(self._blob)


def write_thumbs(path: Path, pack: ThumbPack, order: Sequence[int]) -> list[tuple[int, int, str]]:
    """Write the thumbnails of rows `order` (annoy-id order) to `path`; (offset, length, type) per annoy id."""
    spans: list[tuple[int, int, str]] = []
    offset = 0
    with open(path, "wb") as out:
        for pos in order:
            data = pack[int(pos)]
            spans.append((offset, len(data), media_type(data)))
            out.write(data)
            offset += len(data)
    return spans


class ThumbFile:
    """The read side: a version's thumbs.bin and its row table, loaded once; reads are thread-safe (pread)."""

    def __init__(self, path: Path, db: sqlite3.Connection, count: int) -> None:
        try:
            rows = db.execute("SELECT aid, offset, length, media_type FROM thumbs ORDER BY aid").fetchall()
        except sqlite3.DatabaseError as exc:
            raise IndexMismatch(f"{path}: the metadata has no readable thumbs table: {exc}", reason="meta") from exc
        size = path.stat().st_size
        if [r[0] for r in rows] != list(range(count)):
            raise IndexMismatch(f"{path}: {len(rows)} thumbnail rows for {count} items", reason="meta")
        if any(r[1] < 0 or r[2] < 0 or r[1] + r[2] > size or r[3] not in MEDIA_TYPES for r in rows):
            raise IndexMismatch(f"{path}: a thumbnail row points outside the file", reason="meta")
        self.spans = [(int(r[1]), int(r[2]), str(r[3])) for r in rows]
        self._fd = os.open(path, os.O_RDONLY)

    def read(self, aid: int) -> tuple[bytes, str]:
        offset, length, kind = self.spans[aid]
        return os.pread(self._fd, length, offset), kind

    def close(self) -> None:
        os.close(self._fd)


def no_thumbnails(version: str) -> NotFound:
    return NotFound(
        f"index {version} has no item thumbnails (built before they were added): rebuild the index",
        reason="no_thumbnails",
    )
