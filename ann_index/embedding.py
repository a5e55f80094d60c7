"""The embedding phase of a rebuild: catalog images -> vectors, with decode threads and an optional cache.

Images are fetched, decoded and preprocessed by a thread pool (I/O, PIL and cv2 release the GIL) while
the calling thread runs the embedder on full batches, so both cores stay busy. With an embedding cache,
the threads hash each image's bytes and look the vector up first; only misses are decoded and embedded.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from tqdm import tqdm

from ann_index.builder import DEFAULT_N_TREES, DEFAULT_SEED
from ann_index.catalog import CatalogItem
from ann_index.embed_cache import EmbeddingCache
from ann_index.gate import DEFAULT_RECALL_TARGET
from ann_index.manifest import EmbedderInfo
from imgcore.errors import ImgSearchError
from imgcore.image import DecodeLimits, decode_image
from imgcore.storage import fetch_uri_bytes, resolve_uri


class BatchEmbedder(EmbedderInfo, Protocol):
    """The part of embedder.Embedder the job uses; tests pass a fake."""

    def preprocess(self, image: np.ndarray, box: Any = None) -> np.ndarray: ...
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
    crop: Literal["full", "foreground"] = "full"
    gate_queries: int = 1000
    min_category_precision: float | None = None
    s3_endpoint_url: str | None = None
    limits: DecodeLimits = DecodeLimits()
    progress: bool = True
    work_dir: Path | None = None
    embedding_cache: Path | None = None  # a local SQLite file; None embeds every image


def open_cache(opts: RebuildOptions, embedder: EmbedderInfo) -> AbstractContextManager[EmbeddingCache | None]:
    if opts.embedding_cache is None:
        return nullcontext(None)
    return EmbeddingCache(opts.embedding_cache, embedder.sha256, opts.crop, int(embedder.dim))


# What a decode thread hands back: (image sha256 or "", a cached vector, or a preprocessed image).
Prepared = tuple[str, np.ndarray | None, np.ndarray | None]


def embed_catalog(
    items: list[CatalogItem],
    base_uri: str,
    embedder: BatchEmbedder,
    opts: RebuildOptions,
    cache: EmbeddingCache | None = None,
) -> tuple[list[int], np.ndarray, list[dict[str, Any]]]:
    """Return (positions of embedded items, their vectors, skipped rows with reasons)."""
    crop_fn = None
    if opts.crop == "foreground":
        from embedder.transforms import foreground_box

        crop_fn = foreground_box

    def prepare(item: CatalogItem) -> Prepared:
        data = fetch_uri_bytes(resolve_uri(base_uri, item.image), s3_endpoint_url=opts.s3_endpoint_url)
        key = ""
        if cache is not None:
            key = hashlib.sha256(data).hexdigest()
            hit = cache.get(key)
            if hit is not None:
                return key, hit, None
        image = decode_image(data, opts.limits)
        return key, None, embedder.preprocess(image, crop_fn(image) if crop_fn else None)

    done: list[int] = []
    vectors: list[np.ndarray] = []
    skipped: list[dict[str, Any]] = []
    batch: list[np.ndarray] = []
    batch_pos: list[int] = []
    batch_keys: list[str] = []

    def flush() -> None:
        if batch:
            out = np.asarray(embedder.run(np.stack(batch)), dtype=np.float32)
            vectors.append(out)
            done.extend(batch_pos)
            if cache is not None:
                cache.put_many(batch_keys, out)
            batch.clear()
            batch_pos.clear()
            batch_keys.clear()

    window = max(2, opts.workers) * opts.batch_size * 2  # bounded read-ahead keeps memory flat
    with (
        ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool,
        tqdm(total=len(items), unit="item", desc="embed", disable=not opts.progress, mininterval=0.5) as bar,
    ):
        pending: deque[tuple[int, Future[Prepared]]] = deque()
        todo: Iterator[int] = iter(range(len(items)))
        for pos in todo:
            pending.append((pos, pool.submit(prepare, items[pos])))
            if len(pending) >= window:
                break
        while pending:
            pos, fut = pending.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(prepare, items[nxt])))
            try:
                key, vector, image = fut.result()
            except ImgSearchError as exc:  # unreadable or undecodable image: a skipped row
                skipped.append({"line": items[pos].line, "item_id": items[pos].item_id, "reason": exc.message})
            else:
                if vector is not None:
                    vectors.append(vector[None, :])  # the order of `done` and `vectors` stays the same
                    done.append(pos)
                elif image is not None:
                    batch.append(image)
                    batch_pos.append(pos)
                    batch_keys.append(key)
            if len(batch) >= opts.batch_size:
                flush()
            bar.update(1)
        flush()
    if not vectors:
        return [], np.zeros((0, int(embedder.dim)), np.float32), skipped
    out, positions = np.concatenate(vectors), np.asarray(done)
    if np.any(positions[1:] < positions[:-1]):
        # Cache hits arrive ahead of the batch they overtook; catalog order keeps builds reproducible.
        order = np.argsort(positions, kind="stable")
        return [done[i] for i in order], out[order], skipped
    return done, out, skipped  # already in catalog order: no second copy of every vector
