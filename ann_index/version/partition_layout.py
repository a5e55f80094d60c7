"""The manifest of a partitioned index version (issue 16), and what it must say before any part is fetched.

A version of N > 1 partitions is one folder `versions/<v>/` whose manifest.json names its parts; each part is
a sub-folder `part-<i>/` holding an ordinary single-index version (its own manifest.json, annoy files, metadata,
vectors and thumbnails) with the same version name. The version's manifest lists every part file with its
sha256 and each part manifest's sha256, so a part cannot be swapped in from another build. A version of one
partition is today's layout and has no `partitions` key at all.
"""

from __future__ import annotations

import re
from typing import Any

from ann_index.files import MANIFEST_NAME
from imgcore.errors import IndexMismatch
from imgcore.storage_base import is_safe_name

MAX_PARTITIONS = 1024
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def part_dir(index: int) -> str:
    """The sub-folder of partition `index` inside its version folder."""
    return f"part-{index}"


def partition_count(manifest: dict[str, Any]) -> int:
    """How many partitions a version has (1: today's layout)."""
    value = manifest.get("partitions", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def is_partitioned(manifest: dict[str, Any]) -> bool:
    return "partitions" in manifest


def in_other_partitions(part_manifest: dict[str, Any], category: object) -> bool:
    """A category of a partitioned version with no item in this part: it answers empty, not "unknown"."""
    partition = part_manifest.get("partition") or {}
    return (
        isinstance(category, str)
        and category not in part_manifest["categories"]
        and (category in partition.get("categories", ()))
    )


def check_partitioned_layout(manifest: dict[str, Any], where: str) -> None:
    """Raise IndexMismatch (reason "manifest") unless parts, files and counts of a partitioned version agree."""

    def bad(why: str) -> IndexMismatch:
        return IndexMismatch(f"{where}: {why}", reason="manifest")

    n = partition_count(manifest)
    if not 2 <= n <= MAX_PARTITIONS:
        raise bad(f"partitions must be an integer in 2..{MAX_PARTITIONS}, got {manifest.get('partitions')!r}")
    parts, files = manifest.get("parts"), manifest["files"]
    if not isinstance(parts, list) or len(parts) != n or not isinstance(files, dict):
        raise bad(f"parts must list {n} partitions and files must map names to sha256")
    for name, sha in files.items():
        folder, _, base = str(name).partition("/")
        if folder not in {part_dir(i) for i in range(n)} or not is_safe_name(base, 255):
            raise bad(f"lists a file {name!r} outside its parts' folders")
        if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
            raise bad(f"file {name} has no valid sha256")
    total = 0
    for i, part in enumerate(parts):
        count = part.get("count") if isinstance(part, dict) else None
        if not isinstance(part, dict) or part.get("dir") != part_dir(i) or not isinstance(count, int) or count < 1:
            raise bad(f"part {i} must be an object with dir {part_dir(i)!r} and a count >= 1")
        if files.get(f"{part_dir(i)}/{MANIFEST_NAME}") != part.get("manifest_sha256"):
            raise bad(f"part {i}'s manifest is not listed with its sha256")
        total += count
    if total != manifest["count"]:
        raise bad(f"parts hold {total} items, the manifest says {manifest['count']}")
