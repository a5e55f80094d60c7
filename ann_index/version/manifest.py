"""manifest.json: binds an index version to its files (sha256) and to the exact embedder that made it.

The reader trusts nothing in a version folder that the manifest does not vouch for, so a wrong or
damaged file is refused before annoy, which can crash on a dimension mismatch, ever opens it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ann_index.files import MANIFEST_NAME
from ann_index.version.layout import MAX_FILE_NAME, check_layout
from imgcore.card import sha256_file
from imgcore.errors import IndexMismatch
from imgcore.stamps import parse_stamp, utc_stamp
from imgcore.storage_base import is_safe_name

FORMAT = 1
# The version folder's layout, for caches of built versions (tests): 2 added thumbs.bin (ann_index.thumbs).
LAYOUT = 2
PREPROCESSING_KEYS = ("preprocessing", "preprocess", "input", "normalize", "mean", "std", "input_size")


class EmbedderInfo(Protocol):
    """What the manifest needs to know about the embedder (embedder.Embedder satisfies it)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def card(self) -> dict[str, Any]: ...


def embedder_section(embedder: EmbedderInfo) -> dict[str, Any]:
    card = embedder.card
    preprocessing = {key: card[key] for key in PREPROCESSING_KEYS if key in card}
    return {
        "name": embedder.name,
        "version": embedder.version,
        "sha256": embedder.sha256,
        "dim": int(embedder.dim),
        "metric": embedder.metric,
        "preprocessing": preprocessing,
    }


def make_version(files: dict[str, str], embedder_sha256: str, now: datetime | None = None) -> str:
    """Sortable version: UTC timestamp, then a short hash of the content so equal builds are recognisable."""
    stamp = utc_stamp(now)  # a version name starts with its build time: sortable as text
    digest = hashlib.sha256(embedder_sha256.encode())
    for name, sha in sorted(files.items()):
        digest.update(f"{name}={sha}\n".encode())
    return f"{stamp}-{digest.hexdigest()[:8]}"


def version_time(version: str) -> datetime | None:
    """The UTC build time a version name starts with (`make_version`); None for a name without one."""
    return parse_stamp(version.split("-", 1)[0])


def merge_sections(manifest: dict[str, Any], extra: dict[str, Any]) -> None:
    """Add the caller's sections to a manifest; a section both have is merged key by key."""
    for key, value in extra.items():
        manifest[key] = {**manifest[key], **value} if isinstance(manifest.get(key), dict) else value


def file_sizes(folder: Path, names: Iterable[str]) -> dict[str, int]:
    """Each listed file's size in bytes: the manifest's `sizes`, where a download of the file stops."""
    return {name: (Path(folder) / name).stat().st_size for name in sorted(names)}


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def parse_manifest(data: bytes | str, where: str = MANIFEST_NAME) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexMismatch(f"{where}: manifest is not valid JSON: {exc}", reason="manifest") from exc
    required = ("format", "version", "embedder", "count", "files", "search_k", "n_trees", "categories")
    if not isinstance(manifest, dict) or any(key not in manifest for key in required):
        raise IndexMismatch(f"{where}: manifest lacks one of {', '.join(required)}", reason="manifest")
    if manifest["format"] != FORMAT:
        raise IndexMismatch(f"{where}: manifest format {manifest['format']} is not {FORMAT}", reason="manifest")
    check_layout(manifest, where)
    return manifest


def read_manifest(version_dir: Path) -> dict[str, Any]:
    path = Path(version_dir) / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise IndexMismatch(f"{path}: no manifest; not an index version", reason="missing_file") from exc
    return parse_manifest(data, str(path))


def check_embedder(manifest: dict[str, Any], *, embedder_sha256: str | None, dim: int | None) -> None:
    """Refuse an index made by another embedder: its vectors live in a different space."""
    emb = manifest.get("embedder") or {}
    if embedder_sha256 is not None and emb.get("sha256") != embedder_sha256:
        raise IndexMismatch(
            f"index {manifest.get('version')} was built with embedder {emb.get('name')} "
            f"sha256 {str(emb.get('sha256'))[:12]}, serving embedder is {embedder_sha256[:12]}",
            reason="embedder_sha256",
        )
    if dim is not None and emb.get("dim") != dim:
        raise IndexMismatch(
            f"index {manifest.get('version')} has dim {emb.get('dim')}, serving embedder has dim {dim}",
            reason="dim",
        )


def verify_files(version_dir: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists must exist and match its sha256."""
    for name, sha in sorted(manifest["files"].items()):
        path = Path(version_dir) / name
        if not is_safe_name(name, MAX_FILE_NAME):
            raise IndexMismatch(f"manifest lists an unsafe file name {name!r}", reason="manifest")
        if not path.is_file():
            raise IndexMismatch(f"{path}: file listed in the manifest is missing", reason="missing_file")
        actual = sha256_file(path)
        if actual != sha:
            raise IndexMismatch(
                f"{path}: sha256 {actual[:12]} does not match the manifest ({sha[:12]})", reason="checksum"
            )
