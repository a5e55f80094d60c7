"""UriFetcher: a catalog's images read over one kept-open HTTP client per host, the same bytes and errors as
fetch_uri_bytes."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from imgcore.errors import NotFound, ObjectTooLarge, StoreError
from imgcore.storage import fetch_uri_bytes
from imgcore.uri_fetcher import UriFetcher
from tests.conftest import LocalHttpServer


@pytest.fixture
def host(tmp_path: Path) -> Iterator[LocalHttpServer]:
    for i in range(40):
        (tmp_path / f"img-{i}.bin").write_bytes(bytes([i]) * (100 + i))
    server = LocalHttpServer(tmp_path)
    yield server
    server.close()


def test_images_from_one_host_share_connections_and_match_fetch_uri_bytes(host: LocalHttpServer) -> None:
    uris = [f"{host.url}/img-{i}.bin" for i in range(40)]
    with UriFetcher() as fetcher, ThreadPoolExecutor(2) as pool:
        got = list(pool.map(fetcher.fetch, uris))
    assert got == [bytes([i]) * (100 + i) for i in range(40)]
    assert len(set(host.peers)) <= 2  # two threads: at most two keep-alive connections for 40 images
    before = len(host.peers)
    assert [fetch_uri_bytes(u) for u in uris[:5]] == got[:5]
    assert len(set(host.peers[before:])) == 5  # the one-off function opens a connection per call


def test_errors_and_other_schemes_are_fetch_uri_bytes_own(host: LocalHttpServer, tmp_path: Path) -> None:
    with UriFetcher() as fetcher:
        with pytest.raises(NotFound):
            fetcher.fetch(f"{host.url}/missing.bin")
        host.fail("/img-3.bin", status=500)
        with pytest.raises(StoreError, match="HTTP 500"):
            fetcher.fetch(f"{host.url}/img-3.bin")
        assert fetcher.fetch(f"{host.url}/img-3.bin") == bytes([3]) * 103  # the client survives a failure
        assert fetcher.fetch((tmp_path / "img-4.bin").as_uri()) == bytes([4]) * 104
        assert fetcher.fetch(str(tmp_path / "img-5.bin")) == bytes([5]) * 105  # a plain path, as everywhere


def test_local_files_are_read_through_one_store_per_folder_with_fetch_uri_bytes_answers(tmp_path: Path) -> None:
    (tmp_path / "a b").mkdir()
    (tmp_path / "a b" / "x%y.png").write_bytes(b"one")
    (tmp_path / "a b" / "two.png").write_bytes(b"two")
    uris = [(tmp_path / "a b" / "x%y.png").as_uri(), (tmp_path / "a b" / "two.png").as_uri()]
    with UriFetcher() as fetcher:
        assert [fetcher.fetch(u) for u in uris] == [fetch_uri_bytes(u) for u in uris] == [b"one", b"two"]
        assert len(fetcher._files) == 1  # both files: one store for their folder
        for bad in (uris[1].replace("two", "missing"), uris[1].replace("two.png", "%2e%2e")):
            with pytest.raises(Exception) as ours:
                fetcher.fetch(bad)
            with pytest.raises(Exception) as theirs:
                fetch_uri_bytes(bad)
            assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)
        with pytest.raises(ObjectTooLarge):
            fetcher.fetch(uris[1], max_bytes=2)
