"""Broken index versions published under a running index service (a real process polling a private copy of
the demo index store): each is refused with a metric and a log line, the process survives, and the old
version keeps answering queries.

`tests/services/index/test_index_service.py` covers a flipped byte (checksum) and another embedder's index; these are
the other ways a published version can be wrong: a manifest naming another version, a manifest that is not
JSON, a listed file missing, files whose checksums match the manifest but whose content does not, and a
manifest whose category entries name files outside the version or ranges past the data. A refused version
is remembered: polls do not download and verify it again (the last test counts the store's requests).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from imgcore.card import load_card
from services import defaults
from services.stack import ServiceProcess, free_port, start_service
from tests.conftest import LocalHttpServer
from tests.helpers import ADMIN_TOKEN, clone_version, copy_index_store, current_version, set_current
from tests.helpers.http import metric_value
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

Mutate = Callable[[Path], None]


class IndexUnderTest:
    """One index service on a private store; started again if a test managed to kill it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = copy_index_store(root / "store")
        sha = str(load_card(defaults.DEFAULT_EMBEDDER_DIR)["sha256"])
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


def _rewrite_manifest(version_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
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
        _rewrite_manifest(version_dir, lambda m: m["files"].__setitem__(name, digest))

    return mutate


def _names_another_version(version_dir: Path) -> None:
    _rewrite_manifest(version_dir, lambda m: m.__setitem__("version", "20000101T000000Z-someotherversion"))


def _manifest_not_json(version_dir: Path) -> None:
    (version_dir / "manifest.json").write_text('{"format": 1, "version": ')


def _listed_file_missing(version_dir: Path) -> None:
    (version_dir / "meta.sqlite").unlink()


def _category_file(target: Callable[[Path, str], str]) -> Mutate:
    """Point the first category at `target(version_dir, its file)`; the manifest's files list is left as is."""

    def mutate(version_dir: Path) -> None:
        def change(m: dict[str, Any]) -> None:
            info = m["categories"][sorted(m["categories"])[0]]
            info["file"] = target(version_dir, info["file"])

        _rewrite_manifest(version_dir, change)

    return mutate


def _offset_past_the_data(version_dir: Path) -> None:
    def change(m: dict[str, Any]) -> None:
        m["categories"][sorted(m["categories"])[-1]]["offset"] = m["count"] + 1

    _rewrite_manifest(version_dir, change)


def _garbage_annoy_file(old: bytes) -> bytes:
    # random bytes of a size annoy accepts for this dimension: only the manifest count can tell
    return np.random.default_rng(3).integers(0, 256, len(old), dtype=np.uint8).tobytes()


def _vectors_with_rows_missing(old: bytes) -> bytes:
    vectors = np.load(io.BytesIO(old))
    out = io.BytesIO()
    np.save(out, vectors[: len(vectors) // 2])
    return out.getvalue()


CASES: dict[str, Mutate] = {
    "category-file-absolute": _category_file(lambda _, name: "/etc/hostname"),
    # another version's file of the right size: annoy would load it without complaint
    "category-file-climbs": _category_file(lambda d, name: f"../{current_version(d.parent.parent)}/{name}"),
    "category-offset-past-the-data": _offset_past_the_data,
    "names-another-version": _names_another_version,
    "manifest-not-json": _manifest_not_json,
    "listed-file-missing": _listed_file_missing,
    "garbage-ann-file": _replace_file_keeping_manifest_honest("index.ann", _garbage_annoy_file),
    "vectors-rows-missing": _replace_file_keeping_manifest_honest("vectors.npy", _vectors_with_rows_missing),
}


# What /readyz says a refusal was for: "manifest" ones are refused before any file of the version is opened.
REASONS = {
    "category-file-absolute": "manifest",
    "category-file-climbs": "manifest",
    "category-offset-past-the-data": "manifest",
    "names-another-version": "manifest",
    "manifest-not-json": "manifest",
    "listed-file-missing": "missing_file",
    "garbage-ann-file": "annoy_file",
    "vectors-rows-missing": "vectors",
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


def _reloads(svc: ServiceProcess, result: str) -> float:
    text = httpx.get(svc.url + "/metrics", trust_env=False).text
    return metric_value(text, "imgsearch_index_reloads_total", result=result)


def _failed_reloads(svc: ServiceProcess) -> float:
    return _reloads(svc, "failed")


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
        assert state["refused"]["reason"] == REASONS[case], state  # type: ignore[index]
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


def _admin_reload(svc: ServiceProcess, version: str, force: bool) -> httpx.Response:
    params = {"version": version, "force": str(force).lower()}
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return httpx.post(svc.url + "/admin/reload", params=params, headers=headers, trust_env=False, timeout=60)


def test_a_refused_version_is_not_downloaded_again_at_every_poll(tmp_path: Path, http_server: LocalHttpServer) -> None:
    """A listed category file missing from an HTTP store: refused once; polls, even after store trouble that
    makes the service look at CURRENT afresh, fetch its manifest at most; only a forced reload tries again."""
    store = copy_index_store(http_server.root / "store")
    sha = str(load_card(defaults.DEFAULT_EMBEDDER_DIR)["sha256"])
    args = ["--index-uri", f"{http_server.url}/store", "--local-dir", str(tmp_path / "local"), "--poll-seconds", "0.3"]
    svc = start_service(
        "index",
        free_port(),
        args=[*args, "--embedder-sha256", sha],
        env={"IMGSEARCH_ADMIN_TOKEN": ADMIN_TOKEN},
        log_path=tmp_path / "index.log",
    )
    try:
        svc.wait_ready(120)
        good = current_version(store)
        missing = sorted(n for n in json.loads((store / "versions" / good / "manifest.json").read_text())["files"])[1]
        bad = clone_version(store, "29990401T000000Z-category-file-missing", lambda d: (d / missing).unlink())
        prefix = f"/store/versions/{bad}/"

        def downloads() -> int:  # requests for the version's data files (its manifest not counted)
            return sum(p.startswith(prefix) and not p.endswith("/manifest.json") for _, p in http_server.requests)

        set_current(store, bad)
        wait_until(lambda: _readyz(svc).get("refused"), 30, service=svc, message=lambda: str(_readyz(svc)))
        refused: Any = _readyz(svc)["refused"]
        assert refused["version"] == bad and refused["reason"] == "missing_file" and missing in refused["error"]
        first = downloads()
        assert first == 2  # the file listed before the missing one, then the missing one (404)
        http_server.fail("/store/CURRENT", times=2)  # store trouble: the next good poll looks at CURRENT afresh
        wait_until(lambda: _reloads(svc, "skipped") >= 1, 30, service=svc)
        time.sleep(1.0)  # more polls
        assert downloads() == first and http_server.count("/store/CURRENT") >= 6
        assert _readyz(svc)["refused"]["skipped_reloads"] >= 1  # type: ignore[index]
        assert _query_version(svc) == good
        log = (tmp_path / "index.log").read_text()
        assert log.count(f"index {bad} refused; still serving {good}") == 1

        again = _admin_reload(svc, bad, force=False)
        assert again.status_code == 409 and "was refused before" in again.json()["error"]
        assert downloads() == first
        forced = _admin_reload(svc, bad, force=True)
        assert forced.status_code == 409 and missing in forced.json()["error"]
        assert downloads() == 2 * first  # tried for real
        assert svc.alive() and _query_version(svc) == good
    finally:
        svc.stop()
