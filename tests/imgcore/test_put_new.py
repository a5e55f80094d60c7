"""Create-if-absent writes (`ObjectStore.put_new`): what keeps two change appliers from overwriting each
other, on a real folder and on a real S3-compatible server (moto_server, conditional PUT If-None-Match)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ann_index.version.changes import Delete, change_key, list_changes, read_batch, write_batch
from imgcore.errors import StoreError
from imgcore.storage import open_store
from imgcore.storage_base import ObjectStore
from tests.conftest import LocalHttpServer

SHA = "a" * 64


def _racers(store: ObjectStore, key: str, n: int) -> list[int]:
    """n threads put_new the same key at once; the index of each winner."""
    barrier = threading.Barrier(n)
    won: list[int] = []

    def race(i: int) -> None:
        barrier.wait()
        if store.put_new(key, f"writer {i}".encode()):
            won.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


def test_file_put_new_has_exactly_one_winner_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    won = _racers(store, "a/b/key", 8)
    assert len(won) == 1 and store.get_bytes("a/b/key") == f"writer {won[0]}".encode()
    assert not store.put_new("a/b/key", b"again") and store.get_bytes("a/b/key") == f"writer {won[0]}".encode()
    assert store.list() == ["a/b/key"] and [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["key"]


def test_s3_put_new_has_exactly_one_winner(s3_endpoint: str, s3_bucket: str) -> None:
    store = open_store(f"{s3_bucket}/idx", s3_endpoint_url=s3_endpoint)
    won = _racers(store, "versions/v1/changes/x.json", 8)
    assert len(won) == 1 and store.get_bytes("versions/v1/changes/x.json") == f"writer {won[0]}".encode()
    assert not store.put_new("versions/v1/changes/x.json", b"again")


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_concurrent_appliers_never_overwrite_a_batch(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        store = open_store(f"{bucket}/idx", s3_endpoint_url=request.getfixturevalue("s3_endpoint"))
    else:
        store = open_store(request.getfixturevalue("tmp_path").as_uri())
    got: list[int] = []

    def applier(w: int) -> None:
        for i in range(4):
            got.append(write_batch(store, "v1", [Delete(f"w{w}-{i}")], embedder_sha256=SHA, dim=8))

    threads = [threading.Thread(target=applier, args=(w,)) for w in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 21)) and [s for s, _ in list_changes(store, "v1")] == list(range(1, 21))
    ids = {read_batch(store, "v1", s, embedder_sha256=SHA, dim=8).rows[0].item_id for s in got}
    assert ids == {f"w{w}-{i}" for w in range(5) for i in range(4)}  # every batch survived
    assert not store.put_new(change_key("v1", 1), b"late")  # an object, once written, never changes


def test_read_only_http_store_refuses_put_new(http_server: LocalHttpServer) -> None:
    with pytest.raises(StoreError):
        open_store(http_server.url).put_new("k", b"x")
