"""What a manifest must say about its files before any of them is opened.

A manifest is read from a store that other jobs (and people) write to, so nothing in it is trusted to
point where it should: every file it names anywhere must be a plain name inside its version folder and
be listed with a sha256 (so the sync downloads and verifies it), and every count and offset must fit the
data (an offset past the vectors would otherwise be found only by the first query of that category).
"""

from __future__ import annotations

import re
from typing import Any

from ann_index.files import GLOBAL_INDEX_NAME, MANIFEST_NAME, META_NAME, VECTORS_NAME
from ann_index.version.partition_layout import check_partitioned_layout, is_partitioned
from imgcore.errors import IndexMismatch
from imgcore.storage_base import is_safe_name

MAX_FILE_NAME = 255  # category files are named after categories: longer than other names, within NAME_MAX
REQUIRED_FILES = (GLOBAL_INDEX_NAME, META_NAME, VECTORS_NAME)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class _Refuse:
    def __init__(self, where: str) -> None:
        self.where = where

    def __call__(self, why: str) -> IndexMismatch:
        return IndexMismatch(f"{self.where}: {why}", reason="manifest")


def _whole(value: object, what: str, minimum: int, bad: _Refuse) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_sizes(manifest: dict[str, Any], bad: _Refuse) -> None:
    """`sizes` (optional: versions built before it have none) maps file names to byte counts."""
    sizes = manifest.get("sizes", {})
    if not isinstance(sizes, dict) or not all(_is_size(size) for size in sizes.values()):
        raise bad("sizes must map file names to byte counts")


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_layout(manifest: dict[str, Any], where: str) -> None:
    """Raise IndexMismatch (reason "manifest") unless the files, counts and offsets are consistent."""
    bad = _Refuse(where)
    _check_sizes(manifest, bad)
    if is_partitioned(manifest):  # issue 16: each part's own manifest is checked like this one when fetched
        check_partitioned_layout(manifest, where)
        _whole(manifest["count"], "count", 1, bad)
        _check_numbers(manifest, bad)
        return
    files = manifest["files"]
    if not isinstance(files, dict):
        raise bad("files must map file names to sha256")
    for name, sha in files.items():
        if not is_safe_name(name, MAX_FILE_NAME) or name == MANIFEST_NAME:
            raise bad(f"lists an unsafe file name {name!r}: a plain name inside the version is expected")
        if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
            raise bad(f"file {name} has no valid sha256")
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise bad(f"files lack {', '.join(missing)}")
    _check_numbers(manifest, bad)
    _check_categories(manifest["categories"], _whole(manifest["count"], "count", 1, bad), files, bad)


def _check_numbers(manifest: dict[str, Any], bad: _Refuse) -> None:
    embedder = manifest["embedder"]
    if not isinstance(embedder, dict):
        raise bad("embedder must be an object")
    _whole(embedder.get("dim"), "embedder.dim", 1, bad)
    _whole(manifest["n_trees"], "n_trees", 1, bad)
    _whole(manifest["search_k"], "search_k", 1, bad)


def _check_categories(categories: object, count: int, files: dict[str, Any], bad: _Refuse) -> None:
    """Each category: its own listed file and a range of global ids; together the ranges tile [0, count)."""
    if not isinstance(categories, dict) or not categories:
        raise bad("categories must be a non-empty object")
    ranges: list[tuple[int, int, str]] = []
    seen_files: set[str] = set()
    for name, info in categories.items():
        if not isinstance(info, dict):
            raise bad(f"category {name!r} must be an object")
        file = info.get("file")
        if not is_safe_name(file, MAX_FILE_NAME):
            raise bad(f"category {name!r} names an unsafe file {file!r}: a plain name inside the version is expected")
        if file not in files or file in REQUIRED_FILES or file in seen_files:
            raise bad(f"category {name!r} file {file} is not its own file listed with a sha256")
        seen_files.add(str(file))
        n = _whole(info.get("count"), f"category {name!r} count", 1, bad)
        ranges.append((_whole(info.get("offset"), f"category {name!r} offset", 0, bad), n, name))
    end = 0
    for offset, n, name in sorted(ranges):
        if offset != end or offset + n > count:
            raise bad(f"category {name!r} covers ids {offset}..{offset + n - 1}, expected from {end} within {count}")
        end = offset + n
    if end != count:
        raise bad(f"categories cover {end} of {count} items")
