"""Publish index versions to an object store and pull them back, never exposing a partial version.

Order of writes: data files, then the version's manifest.json (a version without one is incomplete),
then `CURRENT` (one line, written atomically: file stores rename a temp file, S3 PUTs are atomic).
A job killed at any point leaves `CURRENT` on the old version; leftovers are pruned by later runs.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ann_index.files import CURRENT_NAME, MANIFEST_NAME, VERSIONS_PREFIX
from ann_index.version.manifest import parse_manifest, read_manifest, verify_files, version_time
from ann_index.version.partition_layout import is_partitioned
from imgcore.card import sha256_file
from imgcore.errors import ChecksumMismatch, IndexMismatch, InvalidInput, NotFound, ObjectTooLarge, StoreError
from imgcore.storage import ObjectStore
from imgcore.storage_base import is_safe_name

log = logging.getLogger(__name__)
STALE_PARTIAL_S = 3 * 3600
MAX_MANIFEST_BYTES = 64 << 20
# A version built before manifests listed sizes: each file is read up to this much per item (thumbnail,
# vectors, annoy nodes and metadata stay far below it), at least UNSIZED_MIN_BYTES.
UNSIZED_BYTES_PER_ITEM = 64 << 10
UNSIZED_MIN_BYTES = 256 << 20


def check_version(version: str) -> str:
    """Versions become folder names locally and keys remotely: no separators, no dot-names."""
    if not is_safe_name(version):
        raise InvalidInput(f"invalid index version {version!r}")
    return version


def version_key(version: str, name: str = "") -> str:
    return f"{VERSIONS_PREFIX}/{check_version(version)}/{name}" if name else f"{VERSIONS_PREFIX}/{version}/"


def read_current(store: ObjectStore) -> str | None:
    """The published version; None when nothing has been published yet."""
    try:
        text = store.get_bytes(CURRENT_NAME).decode("utf-8", errors="replace").strip()
    except NotFound:
        return None
    try:
        return check_version(text)
    except InvalidInput as exc:
        raise StoreError(f"{store.url_of(CURRENT_NAME)} holds no valid version: {text[:80]!r}") from exc


def published_manifest(store: ObjectStore, version: str) -> dict[str, Any]:
    """The manifest of a published version, as stored (not verified against its files)."""
    key = version_key(version, MANIFEST_NAME)
    return parse_manifest(store.get_bytes(key), store.url_of(key))


def manifest_sha256(store: ObjectStore, version: str) -> str:
    """The sha256 of a published version's manifest bytes: what a server remembers a refused version by."""
    return hashlib.sha256(store.get_bytes(version_key(version, MANIFEST_NAME))).hexdigest()


def list_versions(store: ObjectStore, *, complete_only: bool = True) -> list[str]:
    """Versions in the store, oldest first (versions sort by their UTC timestamp)."""
    found: dict[str, bool] = {}
    for key in store.list(f"{VERSIONS_PREFIX}/"):
        parts = key.split("/")
        if len(parts) >= 3 and is_safe_name(parts[1]):  # changes/ alone (a failed carry-over) is incomplete
            found[parts[1]] = found.get(parts[1], False) or parts[2] == MANIFEST_NAME
    return sorted(v for v, complete in found.items() if complete or not complete_only)


def publish_version(store: ObjectStore, local_dir: Path, *, keep: int = 3) -> str:
    """Upload a built version folder, then point CURRENT at it, then prune old versions."""
    manifest = read_manifest(local_dir)
    version = check_version(manifest["version"])
    for name in sorted(manifest["files"]):
        store.put_file(version_key(version, name), local_dir / name)
    store.put_file(version_key(version, MANIFEST_NAME), local_dir / MANIFEST_NAME)  # marks it complete
    current = read_current(store)
    if current is not None and current.split("-", 1)[0] > version.split("-", 1)[0]:
        # Another job published a newer version while this one uploaded: CURRENT only moves forward.
        # Only the timestamp counts: two builds in the same second must not be ordered by content hash.
        raise StoreError(f"{store.uri}: newer version {current} was published meanwhile; CURRENT left on it")
    store.put_bytes(CURRENT_NAME, f"{version}\n".encode())
    log.info("published index %s to %s", version, store.uri)
    prune_versions(store, keep=keep, current=version)
    return version


def prune_versions(store: ObjectStore, *, keep: int, current: str) -> list[str]:
    """Keep the newest `keep` complete versions (and always `current`); delete anything older.

    Incomplete folders newer than the oldest kept version may be a concurrent job's upload: they are
    deleted only once their timestamp is hours old.
    """
    keep = max(1, keep)
    complete = list_versions(store)
    kept = set(complete[-keep:]) | {current}
    oldest_kept = min(kept)
    stale = set(list_versions(store, complete_only=False)) - set(complete)
    stale = {v for v in stale if v < current and _age_s(v) > STALE_PARTIAL_S}  # a killed job's upload
    deleted = [
        v for v in list_versions(store, complete_only=False) if v not in kept and (v < oldest_kept or v in stale)
    ]
    for version in deleted:
        # The manifest goes first, so an interrupted deletion reads as incomplete, never as valid.
        store.delete_prefix(version_key(version, MANIFEST_NAME))
        store.delete_prefix(version_key(version))
        log.info("deleted old index version %s", version)
    return deleted


def sync_version(store: ObjectStore, version: str, dest_root: Path, *, part: str = "", part_sha256: str = "") -> Path:
    """Download a version into `dest_root/<version>/`, verifying every file against its manifest.

    Files land in a private temp folder that is renamed into place only when all of them verify, so
    the destination never holds a partial version. An already-synced, verified copy is reused. With `part`
    (a partitioned version's `part-<i>`, issue 16) only that part is fetched, into `<version>.<part>/`, and
    its manifest must have the sha256 the version's manifest records for it.
    """
    check_version(version)
    dest_root = Path(dest_root)
    prefix = f"{part}/" if part else ""
    final = dest_root / (f"{version}.{part}" if part else version)
    if final.is_dir():
        try:
            if part and sha256_file(final / MANIFEST_NAME) != part_sha256:
                raise IndexMismatch(f"{final} holds another build's {part}", reason="manifest")
            verify_files(final, read_manifest(final))
            return final
        except IndexMismatch as exc:
            log.warning("local copy of index %s is damaged (%s); downloading again", version, exc)
            shutil.rmtree(final)
    dest_root.mkdir(parents=True, exist_ok=True)
    raw = store.get_bytes(version_key(version, prefix + MANIFEST_NAME), max_bytes=MAX_MANIFEST_BYTES)
    manifest = parse_manifest(raw, store.url_of(version_key(version, prefix + MANIFEST_NAME)))
    if manifest["version"] != version:
        raise IndexMismatch(f"manifest of {version} names version {manifest['version']}", reason="manifest")
    if is_partitioned(manifest):
        n = manifest["partitions"]
        raise IndexMismatch(f"index {version} has {n} partitions: serve each with --partition I", reason="partitioned")
    if part and hashlib.sha256(raw).hexdigest() != part_sha256:
        raise IndexMismatch(f"{part} of {version}: manifest does not match the version's", reason="manifest")
    tmp = Path(tempfile.mkdtemp(dir=dest_root, prefix=f".{version}.partial-"))
    try:
        for name, sha in sorted(manifest["files"].items()):  # plain names: parse_manifest checked them
            _download_listed(store, version, prefix + name, tmp / name, file_bound(manifest, name))
            actual = sha256_file(tmp / name)
            if actual != sha:
                raise ChecksumMismatch(
                    f"{store.url_of(version_key(version, prefix + name))}: sha256 {actual[:12]} != manifest {sha[:12]}"
                )
        (tmp / MANIFEST_NAME).write_bytes(raw)
        try:
            tmp.rename(final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process synced it first: use theirs
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def file_bound(manifest: dict[str, Any], name: str) -> int:
    """How many bytes of a listed file a download reads at most: its size in the manifest, else a bound from
    the item count (versions built before sizes were listed)."""
    size = manifest.get("sizes", {}).get(name)
    if isinstance(size, int):
        return size
    return max(UNSIZED_MIN_BYTES, int(manifest["count"]) * UNSIZED_BYTES_PER_ITEM)


def _download_listed(store: ObjectStore, version: str, name: str, dest: Path, max_bytes: int) -> None:
    """A file the manifest lists but the store lacks, or holds larger than listed, makes the version bad (its
    manifest is written last); the download stops one byte past the listed size."""
    try:
        store.download(version_key(version, name), dest, max_bytes=max_bytes)
    except ObjectTooLarge as exc:
        raise ChecksumMismatch(f"{name} of {version}: {exc.message}") from exc
    except NotFound as exc:
        where = store.url_of(version_key(version, name))
        raise IndexMismatch(
            f"{name} is listed in the manifest of {version} but missing from {where}",
            reason="missing_file",
        ) from exc


def _age_s(version: str) -> float:
    """Seconds since the UTC timestamp a version name starts with; 0 when it has none."""
    stamp = version_time(version)
    return (datetime.now(UTC) - stamp).total_seconds() if stamp else 0.0
