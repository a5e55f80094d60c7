"""Broken index versions published under a running index service (a real process polling a private copy of
the demo index store): each is refused with a metric and a log line, the process survives, and the old
version keeps answering queries.

`tests/services/index/test_index_service.py` covers a flipped byte (checksum) and another embedder's index; these are
the other ways a published version can be wrong: a manifest naming another version, a manifest that is not
JSON, a listed file missing, and files whose checksums match the manifest but whose content does not.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from imgcore.card import load_card
from services import defaults
from services.stack import ServiceProcess, free_port, start_service
from tests.helpers import clone_version, copy_index_store, current_version, set_current
from tests.helpers.http import metric_value
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

Mutate = Callable[[Path], None]


class IndexUnderTest:
    """One index service on a private store; started again if a test managed to kill it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = copy_index_store(root / "store")
        sha = str(load_card(Path(defaults.MODELS_DIR) / "fmnist-lite0")["sha256"])
        self.args = [
            "--index-uri",
            self.store.as_uri(),
            "--local-dir",
            str(root / "local"),
            "--poll-seconds",
            "0.3",
            "--embedder-sha256",
            sha,
        ]
        self.good = current_version(self.store)
        self.svc: ServiceProcess | None = None

    def running(self) -> ServiceProcess:
        if self.svc is None or not self.svc.alive():
            if self.svc is not None:
                self.svc.stop()
            set_current(self.store, self.good)
            self.svc = start_service("index", free_port(), args=self.args, log_path=self.root / "index.log")
            self.svc.wait_ready(120)
        return self.svc


@pytest.fixture(scope="module")
def _index_under_test(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexUnderTest]:
    holder = IndexUnderTest(tmp_path_factory.mktemp("hardening-index"))
    try:
        yield holder
    finally:
        if holder.svc is not None:
            holder.svc.stop()


@pytest.fixture
def index(_index_under_test: IndexUnderTest) -> tuple[ServiceProcess, Path]:
    return _index_under_test.running(), _index_under_test.store


def _rewrite_manifest(version_dir: Path, change: Callable[[dict[str, object]], None]) -> None:
    path = version_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _replace_file_keeping_manifest_honest(name: str, data: Callable[[bytes], bytes]) -> Mutate:
    """Replace a file and write its new sha256 into the manifest: the checksums verify, the content is wrong."""

    def mutate(version_dir: Path) -> None:
        path = version_dir / name
        path.write_bytes(data(path.read_bytes()))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        _rewrite_manifest(version_dir, lambda m: m["files"].__setitem__(name, digest))  # type: ignore[index]

    return mutate


def _names_another_version(version_dir: Path) -> None:
    _rewrite_manifest(version_dir, lambda m: m.__setitem__("version", "20000101T000000Z-someotherversion"))


def _manifest_not_json(version_dir: Path) -> None:
    (version_dir / "manifest.json").write_text('{"format": 1, "version": ')


def _listed_file_missing(version_dir: Path) -> None:
    (version_dir / "meta.sqlite").unlink()


def _garbage_annoy_file(old: bytes) -> bytes:
    # random bytes of a size annoy accepts for this dimension: only the manifest count can tell
    return np.random.default_rng(3).integers(0, 256, len(old), dtype=np.uint8).tobytes()


def _vectors_with_rows_missing(old: bytes) -> bytes:
    vectors = np.load(io.BytesIO(old))
    out = io.BytesIO()
    np.save(out, vectors[: len(vectors) // 2])
    return out.getvalue()


CASES: dict[str, Mutate] = {
    "names-another-version": _names_another_version,
    "manifest-not-json": _manifest_not_json,
    "listed-file-missing": _listed_file_missing,
    "garbage-ann-file": _replace_file_keeping_manifest_honest("index.ann", _garbage_annoy_file),
    "vectors-rows-missing": _replace_file_keeping_manifest_honest("vectors.npy", _vectors_with_rows_missing),
}


def _readyz(svc: ServiceProcess) -> dict[str, object]:
    body: dict[str, object] = httpx.get(svc.url + "/readyz", trust_env=False, timeout=10).json()
    return body


def _query_version(svc: ServiceProcess) -> str:
    dim = int(_readyz(svc)["index"]["dim"])  # type: ignore[index]
    resp = httpx.post(svc.url + "/v1/query", json={"vectors": [[0.5] * dim], "k": 3}, trust_env=False, timeout=30)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["results"][0]) == 3
    return str(resp.json()["version"])


def _failed_reloads(svc: ServiceProcess) -> float:
    text = httpx.get(svc.url + "/metrics", trust_env=False).text
    return metric_value(text, "imgsearch_index_reloads_total", result="failed")


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_version_is_refused_logged_and_counted_while_the_old_one_keeps_serving(
    index: tuple[ServiceProcess, Path], case: str
) -> None:
    svc, store = index
    good = current_version(store)
    assert _query_version(svc) == good
    failed_before = _failed_reloads(svc)
    bad = clone_version(store, f"29990201T000000Z-{case}", CASES[case])
    set_current(store, bad)
    try:
        wait_until(
            lambda: (_readyz(svc).get("refused") or {}).get("version") == bad,  # type: ignore[union-attr]
            30,
            service=svc,
            message=lambda: f"{case}: {_readyz(svc)}",
        )
        assert svc.alive()
        assert _query_version(svc) == good
        state = _readyz(svc)
        assert state["ready"] is True and state["index"]["version"] == good  # type: ignore[index]
        assert _failed_reloads(svc) >= failed_before + 1
        log = svc.log_path.read_text() if svc.log_path else ""
        assert f"index {bad} refused; still serving {good}" in log
    finally:
        set_current(store, good)


def test_current_naming_a_version_that_does_not_exist_keeps_the_old_one(index: tuple[ServiceProcess, Path]) -> None:
    svc, store = index
    good = current_version(store)
    set_current(store, "29990301T000000Z-never-uploaded")
    try:
        time.sleep(1.5)  # several polls
        assert svc.alive() and _query_version(svc) == good
    finally:
        set_current(store, good)
