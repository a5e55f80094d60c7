"""What an index replica downloads and keeps (issue 33, finding 10), with a real replica on a private store.

- A version refused after its download (here: another embedder) leaves no local copy behind: before, it
  stayed and, on a local folder sized for two versions, the next good version failed with "no space left".
- A listed file is read no further than the size its manifest lists (a version built before sizes were
  listed: a bound from its item count): before, a `file://` symlink to `/dev/zero` wrote 3.5 GB in 6 s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ann_index.version.manifest import file_sizes
from services.stack import ServiceProcess, embedder_sha256, free_port, start_service
from tests.helpers import clone_version, copy_index_store, current_version, set_current
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

BIG = 300 << 20  # past the bound of a sizeless version of the demo's 3,000 items (256 MiB)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_index_store(tmp_path_factory.mktemp("downloads") / "store")


@pytest.fixture(scope="module")
def replica(store: Path) -> Iterator[ServiceProcess]:
    args = ["--index-uri", store.as_uri(), "--local-dir", str(store.parent / "cache"), "--poll-seconds", "0.5"]
    svc = start_service("index", free_port(), args=[*args, "--embedder-sha256", str(embedder_sha256())])
    assert svc.wait_ready(180), svc.log_tail()
    yield svc
    svc.stop()


def _refused(svc: ServiceProcess, version: str) -> dict[str, str] | None:
    refused = httpx.get(svc.url + "/readyz", trust_env=False).json().get("refused")
    return refused if refused and refused.get("version") == version else None


def _publish(store: Path, name: str, mutate: Callable[[Path], None]) -> str:
    version = clone_version(store, name, mutate)
    set_current(store, version)
    return version


def _manifest_edit(edit: Callable[[dict[str, object], Path], None]) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(manifest, folder)
        (folder / "manifest.json").write_text(json.dumps(manifest))

    return mutate


def _oversized_vectors(with_sizes: bool) -> Callable[[Path], None]:
    """vectors.npy swapped for a symlink to a sparse file of BIG bytes (the sha256 left as it was)."""

    def edit(manifest: dict[str, object], folder: Path) -> None:
        files = manifest["files"]
        assert isinstance(files, dict)
        manifest.pop("sizes", None)
        if with_sizes:
            manifest["sizes"] = file_sizes(folder, files)
        big = folder.parent.parent / f"big-{folder.name}"
        with open(big, "wb") as fh:
            fh.truncate(BIG)
        (folder / "vectors.npy").unlink()
        os.symlink(big, folder / "vectors.npy")

    return _manifest_edit(edit)


def test_a_refused_version_leaves_no_local_copy(store: Path, replica: ServiceProcess) -> None:
    def other_embedder(manifest: dict[str, object], folder: Path) -> None:
        embedder = manifest["embedder"]
        assert isinstance(embedder, dict)
        embedder["sha256"] = "0" * 64

    served = current_version(store)
    version = _publish(store, "20990101T000000Z-0e0e0e0e", _manifest_edit(other_embedder))
    wait_until(lambda: _refused(replica, version) is not None, 60, message="the version was not refused")
    local = sorted(p.name for p in (store.parent / "cache").iterdir() if not p.name.startswith("."))
    assert local == [served], local
    set_current(store, served)


@pytest.mark.parametrize(
    ("name", "with_sizes"), [("20990102T000000Z-5e5e5e5e", True), ("20990103T000000Z-1e1e1e1e", False)]
)
def test_a_listed_file_is_read_no_further_than_its_bound(
    store: Path, replica: ServiceProcess, name: str, with_sizes: bool
) -> None:
    served = current_version(store)
    version = _publish(store, name, _oversized_vectors(with_sizes))
    wait_until(lambda: _refused(replica, version) is not None, 120, message="the version was not refused")
    refusal = _refused(replica, version)
    assert refusal is not None and "larger than" in refusal["error"], refusal
    assert httpx.get(replica.url + "/readyz", trust_env=False).json()["index"]["version"] == served
    set_current(store, served)
