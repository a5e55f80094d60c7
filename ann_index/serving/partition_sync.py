"""What a partition server fetches of a version (issue 16): its own part only, or the whole of a one-partition
version (today's layout, which is partition 0 of 1)."""

from __future__ import annotations

from pathlib import Path

from ann_index.version.partition_layout import is_partitioned, partition_count
from ann_index.version.publish import published_manifest, sync_version
from imgcore.errors import IndexMismatch
from imgcore.storage import ObjectStore


def sync_partition(store: ObjectStore, version: str, dest_root: Path, partition: int | None) -> Path:
    """Download (and verify) partition `partition` of `version`; the whole version when `partition` is None."""
    if partition is None:
        return sync_version(store, version, dest_root)
    manifest = published_manifest(store, version)
    n = partition_count(manifest)
    if not 0 <= partition < n:
        raise IndexMismatch(f"index {version} has {n} partition(s), none numbered {partition}", reason="partition")
    if not is_partitioned(manifest):
        return sync_version(store, version, dest_root)
    part = manifest["parts"][partition]
    return sync_version(store, version, dest_root, part=part["dir"], part_sha256=part["manifest_sha256"])
