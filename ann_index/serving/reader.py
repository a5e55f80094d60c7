"""IndexReader: the read side used by the index service. Manifest first, annoy last.

Opening checks the manifest against the serving embedder and every file against its sha256 before
annoy maps anything, so a mismatched or damaged version is refused with IndexMismatch instead of
crashing the process. Queries are thread-safe: annoy releases the GIL and only reads the mapped
file; item rows and thumbnails come from `ann_index.serving.item_store` (one connection behind a lock).
`close()` waits for in-flight queries, so a hot swap can close the old reader without unmapping
memory under a running query.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from annoy import AnnoyIndex

from ann_index.files import (
    GLOBAL_INDEX_NAME,
    META_NAME,
    METRIC,
    VECTORS_NAME,
    angular_to_cosine,
    category_slug,
    l2_normalise,
)
from ann_index.items import IndexItem
from ann_index.serving import planner
from ann_index.serving.annoy_file import check_annoy_file
from ann_index.serving.category_sets import category_key, query_set
from ann_index.serving.columns import Columns
from ann_index.serving.hits import PLAIN, Hit, QueryOptions
from ann_index.serving.item_store import ItemStore
from ann_index.thumbs import THUMBS_NAME
from ann_index.version.manifest import check_embedder, read_manifest, verify_files
from ann_index.version.partition_layout import in_other_partitions
from imgcore.errors import IndexMismatch, InvalidInput, ModelNotReady, NotFound
from imgcore.retrieval import check_k

GATE_K = planner.GATE_K
__all__ = ["Hit", "IndexReader", "QueryOptions"]


class IndexReader:
    def __init__(self, path: Path, manifest: dict[str, Any], prefault: bool) -> None:
        self.path = path
        self.manifest = manifest
        self.version: str = manifest["version"]
        self.count: int = int(manifest["count"])
        self.dim: int = int(manifest["embedder"]["dim"])
        self.n_trees: int = int(manifest["n_trees"])
        self.search_k: int = int(manifest["search_k"])
        self._cat_info: dict[str, dict[str, Any]] = manifest["categories"]
        self._slugs: dict[str, str] = {category_slug(name): name for name in self._cat_info}
        try:
            self._vectors = np.load(path / VECTORS_NAME, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise IndexMismatch(f"{path}: vectors.npy is not a numpy array file: {exc}", reason="vectors") from exc
        if self._vectors.shape != (self.count, self.dim):
            raise IndexMismatch(f"{path}: vectors.npy has shape {self._vectors.shape}", reason="vectors")
        # Every file is checked before annoy maps any: a wrong file must fail here, not crash in annoy.
        check_annoy_file(path / GLOBAL_INDEX_NAME, self.dim, self.count)
        for info in self._cat_info.values():
            check_annoy_file(path / info["file"], self.dim, int(info["count"]))
        self._global = self._load(GLOBAL_INDEX_NAME, prefault)
        self._cats = {name: self._load(info["file"], prefault) for name, info in self._cat_info.items()}
        thumbs = path / THUMBS_NAME if THUMBS_NAME in manifest["files"] else None
        self._items = ItemStore(path / META_NAME, thumbs, self.count, self.version)
        self.columns = Columns(self._items.filter_rows(), self.count)
        self._state = threading.Condition()
        self._active = 0
        self._closed = False

    @classmethod
    def open(
        cls,
        local_dir: Path,
        *,
        embedder_sha256: str | None,
        dim: int | None,
        prefault: bool = False,
        verify: bool = True,
    ) -> IndexReader:
        """Open a synced version folder; IndexMismatch if it does not belong to the serving embedder."""
        path = Path(local_dir)
        manifest = read_manifest(path)
        check_embedder(manifest, embedder_sha256=embedder_sha256, dim=dim)
        if manifest["embedder"].get("metric", METRIC) != METRIC:
            raise IndexMismatch(f"{path}: metric {manifest['embedder'].get('metric')} is not {METRIC}")
        if verify:
            verify_files(path, manifest)
        return cls(path, manifest, prefault)

    @property
    def categories(self) -> dict[str, int]:
        return {name: int(info["count"]) for name, info in self._cat_info.items()}

    def _load(self, name: str, prefault: bool) -> AnnoyIndex:
        index = AnnoyIndex(self.dim, METRIC)
        index.load(str(self.path / name), prefault=prefault)  # mmap: processes share the pages
        return index

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._state:
            if self._closed:
                raise ModelNotReady(f"index {self.version} is closed")
            self._active += 1
        try:
            yield
        finally:
            with self._state:
                self._active -= 1
                self._state.notify_all()

    def resolve_category(self, category: str) -> str:
        """Exact name, or its slug ("ankle-boot"), so categories can travel in URLs."""
        if category in self._cat_info:
            return category
        if category in self._slugs:
            return self._slugs[category]
        raise NotFound(f"unknown category {category!r}", reason="unknown_category")

    @property
    def filter_keys(self) -> frozenset[str]:
        """The keys a filter may name: this version's (all partitions' when the build recorded them)."""
        recorded = (self.manifest.get("partition") or {}).get("filter_keys")
        return frozenset(recorded) if isinstance(recorded, list) else self.columns.keys

    def query(
        self,
        vectors: np.ndarray,
        k: int,
        category: str | Sequence[str] | None = None,
        options: QueryOptions = PLAIN,
    ) -> list[list[Hit]]:
        """Top-k items per query row, best first, one hit per item_id (per product with `options.group`);
        `category` a name, a list of names (any of them: `ann_index.serving.category_sets`, #15) or None (all);
        `options.where` a filter (`ann_index.serving.planner`, #28)."""
        if category is not None and not isinstance(category, str):
            return query_set(self, vectors, k, category_key(self, category), options)
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise InvalidInput(f"query vectors must have shape [n, {self.dim}], got {list(arr.shape)}")
        check_k(k)
        if category is None:
            offset, index, size = 0, self._global, self.count
        elif in_other_partitions(self.manifest, category):
            return [[] for _ in arr]  # a category of the version with no item in this partition (issue 16)
        else:
            name = self.resolve_category(category)
            offset, index, size = (
                int(self._cat_info[name]["offset"]),
                self._cats[name],
                int(self._cat_info[name]["count"]),
            )
        if not options.plain:
            scope = planner.Scope(
                index, offset, size, self.search_k, self.n_trees, self._vectors, self.columns, self._items.rows
            )
            with self._reading():
                return planner.search(scope, l2_normalise(arr), k, options)
        k = min(k, size)
        search_k = max(self.search_k, self.search_k * k // GATE_K, k * self.n_trees)
        with self._reading():
            return [self._query_one(index, offset, row, k, search_k) for row in l2_normalise(arr)]

    def _query_one(self, index: AnnoyIndex, offset: int, vec: np.ndarray, k: int, search_k: int) -> list[Hit]:
        fetch = k
        while True:
            ids, dists = index.get_nns_by_vector(vec.tolist(), fetch, search_k=search_k, include_distances=True)
            rows = self._items.rows([i + offset for i in ids])
            hits: list[Hit] = []
            seen: set[str] = set()
            for aid, dist in zip(ids, dists, strict=True):
                row = rows[aid + offset]
                if row[0] in seen:  # several vectors of one item: keep the closest
                    continue
                seen.add(row[0])
                code = int(self.columns.product[aid + offset])
                product, images = self.columns.product_names[code], int(self.columns.images[code])
                attrs = json.loads(row[4])
                hits.append(Hit(row[0], angular_to_cosine(dist), row[1], row[2], row[3], attrs, product, images))
            if len(hits) >= k or len(ids) < fetch:
                return hits[:k]
            fetch *= 2

    def vector_of(self, item_id: str) -> np.ndarray:
        """The stored (normalised) vector of an item, for search-by-item."""
        with self._reading():
            aid, _ = self._items.find(item_id)
            return np.array(self._vectors[aid], dtype=np.float32)

    def holds(self, item_id: str) -> bool:
        """Whether this version holds `item_id`."""
        with self._reading():
            try:
                self._items.find(item_id)
            except NotFound:
                return False
            return True

    def item(self, item_id: str) -> IndexItem:
        with self._reading():
            _, row = self._items.find(item_id)
        return IndexItem(row[0], row[1], row[2], row[3], json.loads(row[4]))

    def thumbnail(self, item_id: str) -> tuple[bytes, str]:
        """An item's thumbnail from thumbs.bin and its media type; NotFound for an unknown item or no thumbnails."""
        with self._reading():
            aid, _ = self._items.find(item_id)
            return self._items.thumbnail(aid)

    def close(self) -> None:
        """Wait for in-flight queries, then unmap. Idempotent."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            self._state.wait_for(lambda: self._active == 0)
        self._unload()
        self._items.close()

    def _unload(self) -> None:
        for index in [self._global, *self._cats.values()]:
            index.unload()
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)

    def __enter__(self) -> IndexReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
