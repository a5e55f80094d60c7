"""The embedding phase of a rebuild: catalog images -> vectors, with decode threads and an optional cache.

Images are fetched, decoded and preprocessed by a thread pool (I/O, PIL and cv2 release the GIL) while
the calling thread runs the embedder on full batches, so both cores stay busy. With an embedding cache,
the threads hash each image's bytes and look the vector up first; only misses are preprocessed and
embedded. Hits are decoded too, for the item's thumbnail (ann_index.thumbs), unless the image is its own
thumbnail (ann_index.build.thumb_reuse): decoding and a 256 px JPEG cost far less than the embedder, and a
thumbnail cache would be a second cache to keep right.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np
from tqdm import tqdm

from ann_index.build.batches import Batches
from ann_index.build.decode_pool import DecodePool, PixelWork
from ann_index.build.embed_cache import EmbeddingCache
from ann_index.build.forest import DEFAULT_N_TREES, DEFAULT_SEED
from ann_index.build.gate import DEFAULT_RECALL_TARGET
from ann_index.build.self_match import DEFAULT_MIN_SELF_MATCH, DEFAULT_QUERIES
from ann_index.catalog.rows import CatalogItem
from ann_index.thumbs import ThumbFormat, ThumbPack
from ann_index.version.manifest import EmbedderInfo
from imgcore.errors import ImgSearchError, InvalidInput
from imgcore.image import DecodeLimits
from imgcore.storage import resolve_uri
from imgcore.uri_fetcher import UriFetcher


class BatchEmbedder(EmbedderInfo, Protocol):
    """The part of embedder.Embedder the job uses; tests pass a fake."""

    def whole_image_pixels(self, image: np.ndarray, foreground: bool) -> tuple[np.ndarray, Any]: ...
    def run(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class RebuildOptions:
    n_trees: int = DEFAULT_N_TREES
    workers: int = 2
    keep: int = 3
    recall_target: float = DEFAULT_RECALL_TARGET
    seed: int = DEFAULT_SEED
    batch_size: int = 32
    max_fail_fraction: float = 0.01
    # "foreground": as the search path embeds a whole photo (Embedder.whole_image_pixels), so a catalog image
    # searched as it is finds its own vector; "full" embeds it padded to square, which the gate's self-match
    # check then measures against the search path.
    crop: Literal["full", "foreground"] = "foreground"
    gate_queries: int = 1000
    # Catalog images the gate embeds as a search does and looks up (ann_index.build.self_match); 0: none.
    self_match_queries: int = DEFAULT_QUERIES
    min_self_match: float = DEFAULT_MIN_SELF_MATCH
    min_category_precision: float | None = None
    s3_endpoint_url: str | None = None
    limits: DecodeLimits = DecodeLimits()
    progress: bool = True
    work_dir: Path | None = None
    embedding_cache: Path | None = None  # a local SQLite file; None embeds every image
    # Worker processes that decode, thumbnail and preprocess (ann_index.build.decode_pool); 0: in the decode threads.
    decode_processes: int = 0
    # Batches the embedder runs at once, each in its own thread: give it single-threaded sessions, one lane
    # per core (services.rebuild_embedder); 1: one run at a time, as many intra-op threads as it has.
    model_lanes: int = 1
    decode_threads: int = 0  # 0: one per two model lanes, or `workers` without lanes (decode_threads())
    thumbnail_format: ThumbFormat = "jpeg"  # item thumbnails (ann_index.thumbs): JPEG is 12x cheaper to make
    allow_absolute_images: bool = False  # catalog images may be absolute URIs; else only inside its folder
    partitions: int = 1  # index partitions of the published version (issue 16); 1: today's layout
    changes_since: float | None = None  # epoch of the catalog snapshot; None: when the rebuild read it (#17)
    duplicates: bool = (
        False  # write the near-duplicate listings report beside the version (ann_index.version.duplicates)
    )

    def gate_options(self) -> dict[str, Any]:
        """The quality gate's keyword arguments (`gate.run_gate`), the same for a whole and a partitioned build."""
        return {
            "n_trees": self.n_trees,
            "recall_target": self.recall_target,
            "n_queries": self.gate_queries,
            "min_category_precision": self.min_category_precision,
            "min_self_match": self.min_self_match,
            "seed": self.seed,
            "workers": self.workers,
        }


def open_cache(opts: RebuildOptions, embedder: EmbedderInfo) -> AbstractContextManager[EmbeddingCache | None]:
    if opts.embedding_cache is None:
        return nullcontext(None)
    return EmbeddingCache(opts.embedding_cache, embedder.sha256, opts.crop, int(embedder.dim))


@dataclass
class Embedded:
    """The outcome of embedding catalog rows: what was embedded (catalog order) and what was given up on."""

    items: list[CatalogItem]
    vectors: np.ndarray  # float32 [len(items), dim]
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"line", "item_id", "reason"} per row
    cache_stats: dict[str, object] | None = None  # with an embedding cache: its hits and misses
    thumbs: ThumbPack = field(default_factory=ThumbPack)  # one per embedded item, same order


def embed_items(items: list[CatalogItem], base_uri: str, embedder: BatchEmbedder, opts: RebuildOptions) -> Embedded:
    """Embed `items` (images relative to `base_uri`), through the embedding cache when `opts` names one."""
    work = PixelWork(embedder, opts.limits, opts.crop, opts.thumbnail_format)
    # The workers fork first: they never inherit the cache's SQLite connection.
    with (
        opencv_threads(1),
        DecodePool(work, opts.decode_processes) as pixels,
        open_cache(opts, embedder) as cache,
        UriFetcher(s3_endpoint_url=opts.s3_endpoint_url) as fetcher,
    ):
        prepare = _Preparer(base_uri, opts, cache, pixels, fetcher)
        done, vectors, skipped, thumbs = _embed(items, prepare, embedder, opts)
    if vectors.shape[1] != embedder.dim:
        raise InvalidInput(f"embedder returned dim {vectors.shape[1]}, its card says {embedder.dim}")
    stats = cache.stats() if cache is not None else None
    return Embedded([items[p] for p in done], vectors, skipped, stats, thumbs)


CHUNK = 8  # catalog rows per decode task


@contextmanager
def opencv_threads(n: int) -> Iterator[None]:
    """OpenCV's own thread pool at `n` threads for the block, then as it was (a process-wide setting).

    The job keeps every core busy with its decode threads and model lanes; a catalog image's resize or blur
    split across OpenCV's pool waits for a pool thread to get a core, so the decode thread stalls: 1 thread
    took the job from ~1 260 to ~1 330-1 420 images/s (docs/benchmarks.md, P4).
    """
    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def decode_threads(opts: RebuildOptions) -> int:
    """Threads that fetch, decode and thumbnail, unless set: one per two model lanes, else `workers`.

    A catalog image costs a decode thread an eighth of what it costs an fp32 lane (0.34 vs 2.7 ms of CPU)
    and a quarter of an int8 one (1.3 ms), and a second decode thread beside two lanes on two cores only
    queues on the GIL: 0.45 ms of CPU per image instead of 0.34, for no more images per second
    (docs/benchmarks.md, P4). One per two lanes keeps int8 lanes fed on more cores (one thread supplies
    ~2 900 images/s, four int8 lanes eat ~3 000). One run at a time (no lanes) keeps `workers`.
    """
    if opts.decode_threads > 0:
        return opts.decode_threads
    return max(1, opts.model_lanes // 2) if opts.model_lanes > 1 else max(1, opts.workers)


# What a decode thread hands back: (image sha256 or "", a cached vector, or the model's uint8 pixels, thumbnail).
Prepared = tuple[str, np.ndarray | None, np.ndarray | None, bytes]


@dataclass
class _Preparer:
    """Runs in the decode threads: fetch an image, look it up in the cache, and have `pixels` decode and
    thumbnail it (and preprocess it on a miss)."""

    base_uri: str
    opts: RebuildOptions
    cache: EmbeddingCache | None
    pixels: DecodePool
    fetcher: UriFetcher  # one HTTP client per image host for the whole job

    def __call__(self, item: CatalogItem) -> Prepared:
        uri = resolve_uri(self.base_uri, item.image, allow_absolute=self.opts.allow_absolute_images)
        # Bounded while it is read: 24 rows naming a 52 MB image held 1.17 GB before the decoder refused them.
        data = self.fetcher.fetch(uri, max_bytes=self.opts.limits.max_bytes)
        key, hit = "", None
        if self.cache is not None:
            key = hashlib.sha256(data).hexdigest()
            hit = self.cache.get(key)
        thumb, image = self.pixels(data, hit is None)
        return key, hit, image, thumb

    def many(self, items: list[CatalogItem]) -> list[Prepared | ImgSearchError]:
        """`self(item)` for each item; a row's typed error in its place, so one bad image skips one row."""
        out: list[Prepared | ImgSearchError] = []
        for item in items:
            try:
                out.append(self(item))
            except ImgSearchError as exc:
                # Without its traceback: the frames it holds would keep the image's bytes until the chunk is read.
                out.append(exc.with_traceback(None))
        return out


def _embed(
    items: list[CatalogItem], prepare: _Preparer, embedder: BatchEmbedder, opts: RebuildOptions
) -> tuple[list[int], np.ndarray, list[dict[str, Any]], ThumbPack]:
    """Return (positions of embedded items, their vectors, skipped rows with reasons), in catalog order, and
    the embedded items' thumbnails in the same order."""
    skipped: list[dict[str, Any]] = []
    window = max(2, opts.workers) * opts.batch_size * 2  # bounded read-ahead keeps memory flat
    width = max(1, opts.model_lanes)
    with (
        ThreadPoolExecutor(max_workers=decode_threads(opts)) as pool,
        ThreadPoolExecutor(width, thread_name_prefix="model-lane") if width > 1 else nullcontext() as lanes,
        tqdm(total=len(items), unit="item", desc="embed", disable=not opts.progress, mininterval=0.5) as bar,
    ):
        batches = Batches(embedder, prepare.cache, lanes, width)
        # A decode task prepares a chunk of rows: one future and two thread wake-ups per chunk instead of per
        # row (0.17 ms of the job's CPU per row went to handing single rows between threads).
        chunks: Iterator[range] = (range(a, min(a + CHUNK, len(items))) for a in range(0, len(items), CHUNK))
        pending: deque[tuple[range, Future[list[Prepared | ImgSearchError]]]] = deque()
        for rows in chunks:
            pending.append((rows, pool.submit(prepare.many, [items[pos] for pos in rows])))
            if len(pending) * CHUNK >= window:
                break
        while pending:
            rows, fut = pending.popleft()
            nxt = next(chunks, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(prepare.many, [items[pos] for pos in nxt])))
            for pos, got in zip(rows, fut.result(), strict=True):
                if isinstance(got, ImgSearchError):  # unreadable or undecodable image: a skipped row
                    skipped.append({"line": items[pos].line, "item_id": items[pos].item_id, "reason": got.message})
                else:
                    batches.add(pos, *got)
                if len(batches.batch) >= opts.batch_size:
                    batches.flush()
            bar.update(len(rows))
        batches.finish()
    return (*batches.in_catalog_order(int(embedder.dim)), skipped, batches.thumbs)
