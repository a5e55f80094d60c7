"""Structural check of an annoy (angular, int32 ids, float32) file before annoy maps it.

Checksums prove a file is the one the manifest lists, not that it is a sane index: a garbage file with
an honest manifest (a bug in a publisher, a hand-edited store) would make annoy follow wild node ids and
crash the process. Walking the node array with numpy costs one sequential read and rules that out:
every bucket lists item ids only, every split node points to earlier nodes (annoy writes children
before parents, so no cycles), and the item count is the one the manifest promised.

Layout (annoylib.h, Angular): per node int32 n_descendants, int32 children[2] (children[0] shares its
bytes with the float norm on item nodes), float32 v[dim]. Nodes 0..n_items-1 are items; a node with
n_descendants <= dim + 2 lists its descendants in place of children + vector; the last nodes are
copies of the tree roots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgcore.errors import IndexMismatch


def check_annoy_file(path: Path, dim: int, n_items: int) -> None:
    """Raise IndexMismatch unless `path` is a structurally valid angular index of `n_items` items."""
    width = 3 + dim  # int32 words per node
    try:
        size = path.stat().st_size
    except OSError as exc:  # only reachable without verify_files, which checks every listed file first
        raise IndexMismatch(f"{path.name}: cannot be read: {exc.strerror}", reason="missing_file") from exc
    if n_items < 1 or size == 0 or size % (4 * width):
        raise IndexMismatch(f"{path.name}: {size} bytes is not a whole number of {dim}-d nodes", reason="annoy_file")
    nodes = np.memmap(path, dtype="<i4", mode="r").reshape(-1, width)
    n_nodes = nodes.shape[0]

    def bad(why: str) -> IndexMismatch:
        return IndexMismatch(f"{path.name}: not a valid annoy index for {n_items} items: {why}", reason="annoy_file")

    if n_nodes <= n_items:
        raise bad(f"only {n_nodes} nodes")
    if np.any(nodes[:n_items, 0] != 1):
        raise bad("item nodes are damaged")
    inner = np.asarray(nodes[n_items:, :])
    nd = inner[:, 0]
    if int(nd[-1]) != n_items:
        raise bad(f"roots count {int(nd[-1])} items")
    if np.any(nd < 1) or np.any(nd > n_items):
        raise bad("descendant counts out of range")
    k = dim + 2  # annoy's K: ids that fit in place of children + vector
    buckets = inner[nd <= k]
    listed = buckets[:, 1 : 1 + k]
    used = np.arange(k)[None, :] < buckets[:, :1]
    if np.any(used & ((listed < 0) | (listed >= n_items))):
        raise bad("a leaf lists an id that is not an item")
    splits = nd > k
    own = np.arange(n_items, n_nodes)[splits]
    children = inner[splits, 1:3]
    if np.any(children < 0) or np.any(children >= own[:, None]):
        raise bad("a split node points outside the tree")
