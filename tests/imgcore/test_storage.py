"""imgcore.storage against a real folder, a real local HTTP server and a real moto_server."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgcore.errors import InvalidInput, NotFound, ObjectTooLarge, StoreError
from imgcore.storage import fetch_uri_bytes, open_store, resolve_uri
from imgcore.storage_base import TMP_SUFFIX, ObjectStore
from imgcore.storage_s3 import S3Store
from tests.conftest import LocalHttpServer, env_vars


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(TMP_SUFFIX))


# --------------------------------------------------------------------------- resolve_uri


@pytest.mark.parametrize(
    ("base", "ref", "expected"),
    [
        ("s3://bkt/catalog", "images/a.jpg", "s3://bkt/catalog/images/a.jpg"),
        ("s3://bkt/catalog/", "./images/a.jpg", "s3://bkt/catalog/images/a.jpg"),
        ("s3://bkt/catalog/v1/", "images/./a.jpg", "s3://bkt/catalog/v1/images/a.jpg"),
        ("file:///data/catalog", "img/x.png", "file:///data/catalog/img/x.png"),
        ("/data/catalog", "img/x.png", "file:///data/catalog/img/x.png"),
        ("http://h:8080/base", "a/b.jpg", "http://h:8080/base/a/b.jpg"),
        ("file:///data/catalog", "my%20shoe.png", "file:///data/catalog/my%20shoe.png"),
        ("file:///data/catalog", "a..b/c...png", "file:///data/catalog/a..b/c...png"),
    ],
)
def test_resolve_uri_joins_relative_refs_inside_the_catalog_folder(base: str, ref: str, expected: str) -> None:
    assert resolve_uri(base, ref) == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("/other/a.jpg", "s3://bkt/other/a.jpg"),
        ("https://cdn.example/a.jpg", "https://cdn.example/a.jpg"),
        ("file:///abs/a.jpg", "file:///abs/a.jpg"),
    ],
)
def test_absolute_refs_resolve_only_when_the_catalog_allows_them(ref: str, expected: str) -> None:
    with pytest.raises(InvalidInput, match="is absolute; this catalog allows only paths inside its folder"):
        resolve_uri("s3://bkt/catalog", ref)
    assert resolve_uri("s3://bkt/catalog", ref, allow_absolute=True) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "../../etc/hostname",
        "%2e%2e/%2e%2e/etc/hostname",
        "%2E%2e/x.png",
        "images/../../x.png",
        "images/..",
        "..%2f..%2fetc%2fhostname",
        "%2e/x.png",
        "images/x%00.png",
        "images\\..\\..\\x.png",
        "images%5c..%5cx.png",
    ],
)
def test_refs_that_leave_the_catalog_folder_are_refused_even_when_absolute_refs_are_allowed(ref: str) -> None:
    for allow in (False, True):
        with pytest.raises(InvalidInput, match="catalog's folder|backslash"):
            resolve_uri("file:///data/catalog/", ref, allow_absolute=allow)


@pytest.mark.parametrize("ref", ["", "  ", ".", "./"])
def test_resolve_uri_refuses_refs_that_name_no_file(ref: str) -> None:
    with pytest.raises(InvalidInput):
        resolve_uri("s3://bkt/catalog", ref)


def test_root_relative_refs_may_not_climb_above_the_bucket_even_when_allowed() -> None:
    with pytest.raises(InvalidInput, match="climbs above the root"):
        resolve_uri("s3://bkt/catalog", "/../../etc/passwd", allow_absolute=True)


# --------------------------------------------------------------------------- file://


def test_file_store_round_trip_list_and_delete_prefix(tmp_path: Path) -> None:
    store = open_store((tmp_path / "store").as_uri())
    store.put_bytes("versions/v1/a.bin", b"A")
    store.put_bytes("versions/v10/b.bin", b"B")
    store.put_bytes("CURRENT", b"v1\n")
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 3_000_000)
    store.put_file("versions/v1/big.bin", src)

    assert store.get_bytes("versions/v1/a.bin") == b"A"
    assert fetch_uri_bytes(f"{store.uri}/versions/v1/a.bin") == b"A"
    assert store.exists("CURRENT") and not store.exists("versions/v1")
    assert store.list() == ["CURRENT", "versions/v1/a.bin", "versions/v1/big.bin", "versions/v10/b.bin"]
    assert store.list("versions/v1/") == ["versions/v1/a.bin", "versions/v1/big.bin"]
    store.delete_prefix("versions/v1/")
    assert store.list() == ["CURRENT", "versions/v10/b.bin"]
    assert not (tmp_path / "store" / "versions" / "v1").exists()  # emptied folders are pruned
    assert _leftovers(tmp_path) == []


def test_file_store_missing_key_is_not_found_and_download_leaves_dest_untouched(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))  # a bare absolute path means file://
    dest = tmp_path / "out" / "dest.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    with pytest.raises(NotFound, match="missing.bin"):
        store.get_bytes("missing.bin")
    with pytest.raises(NotFound):
        store.download("missing.bin", dest)
    assert dest.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_file_download_streams_every_byte_to_the_callback(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    payload = bytes(range(256)) * 10_000
    store.put_bytes("m/model.onnx", payload)
    seen: list[bytes] = []
    store.download("m/model.onnx", tmp_path / "copy.onnx", on_chunk=seen.append)
    assert b"".join(seen) == payload == (tmp_path / "copy.onnx").read_bytes()


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", ""])
def test_keys_that_could_escape_the_root_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidInput):
        open_store(tmp_path.as_uri()).put_bytes(key, b"x")


def test_delete_with_empty_prefix_is_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    store.put_bytes("keep", b"1")
    with pytest.raises(InvalidInput):
        store.delete_prefix("")
    assert store.list() == ["keep"]


def test_unsupported_scheme_is_refused() -> None:
    with pytest.raises(InvalidInput, match="gs://"):
        open_store("gs://bucket/x")


# --------------------------------------------------------------------------- http(s)://


def test_http_store_reads_objects_and_maps_404(http_server: LocalHttpServer, tmp_path: Path) -> None:
    (http_server.root / "base" / "sub").mkdir(parents=True)
    (http_server.root / "base" / "sub" / "a b.txt").write_bytes(b"hello")
    with open_store(f"{http_server.url}/base") as store:
        assert store.get_bytes("sub/a b.txt") == b"hello"
        assert store.exists("sub/a b.txt") and not store.exists("sub/nope")
        with pytest.raises(NotFound, match="nope"):
            store.get_bytes("sub/nope")
        store.download("sub/a b.txt", tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_bytes() == b"hello"
    assert fetch_uri_bytes(f"{http_server.url}/base/sub/a%20b.txt") == b"hello"


def test_http_store_is_read_only(http_server: LocalHttpServer, tmp_path: Path) -> None:
    with open_store(http_server.url) as store:
        for action in (lambda: store.put_bytes("k", b"x"), lambda: store.delete_prefix("k"), store.list):
            with pytest.raises(StoreError, match="read-only|no listing"):
                action()


def test_http_5xx_is_a_store_error_naming_the_uri(http_server: LocalHttpServer) -> None:
    (http_server.root / "f").write_bytes(b"x")
    http_server.fail("/f", times=1, status=503)
    with open_store(http_server.url) as store:
        with pytest.raises(StoreError, match=r"/f failed: HTTP 503"):
            store.get_bytes("f")
        assert store.get_bytes("f") == b"x"  # the fault was for one request only
    assert http_server.count("/f") == 2


def test_http_connection_cut_midway_leaves_no_partial_file(http_server: LocalHttpServer, tmp_path: Path) -> None:
    (http_server.root / "big.bin").write_bytes(b"z" * 500_000)
    http_server.truncate("/big.bin", after_bytes=100_000)
    dest = tmp_path / "dl" / "big.bin"
    with open_store(http_server.url) as store, pytest.raises(StoreError, match="big.bin"):
        store.download("big.bin", dest)
    assert not dest.exists()
    assert list((tmp_path / "dl").iterdir()) == []


def test_http_stall_times_out_as_store_error(http_server: LocalHttpServer) -> None:
    (http_server.root / "slow").write_bytes(b"x")
    http_server.stall("/slow", seconds=5)
    with open_store(http_server.url, timeout_s=0.3) as store, pytest.raises(StoreError, match="Timeout"):
        store.get_bytes("slow")


def test_http_connection_refused_is_a_store_error() -> None:
    from tests.conftest import free_port

    with pytest.raises(StoreError, match="ConnectError"):
        fetch_uri_bytes(f"http://127.0.0.1:{free_port()}/x", timeout_s=1)


# --------------------------------------------------------------------------- s3://


def test_s3_put_get_list_download_delete(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    store = open_store(f"{s3_bucket}/root", s3_endpoint_url=s3_endpoint)
    other = open_store(f"{s3_bucket}/rootx", s3_endpoint_url=s3_endpoint)
    other.put_bytes("outside", b"o")
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * 2_000_000)
    store.put_file("v1/big.bin", big)
    store.put_bytes("v1/small.txt", b"s")
    store.put_bytes("CURRENT", b"v1")
    store.put_bytes("CURRENT", b"v2")  # overwrite is whole-object

    assert store.get_bytes("CURRENT") == b"v2"
    assert store.list() == ["CURRENT", "v1/big.bin", "v1/small.txt"]  # relative keys, prefix-scoped
    assert store.exists("v1/small.txt") and not store.exists("v1/none")
    store.download("v1/big.bin", tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == big.read_bytes()
    with pytest.raises(NotFound, match=r"s3://.*/root/v1/none"):
        store.get_bytes("v1/none")
    with pytest.raises(NotFound):
        store.download("v1/none", tmp_path / "none.bin")
    assert not (tmp_path / "none.bin").exists()

    store.delete_prefix("v1/")
    assert store.list() == ["CURRENT"]
    assert other.list() == ["outside"]
    assert fetch_uri_bytes(f"{s3_bucket}/root/CURRENT", s3_endpoint_url=s3_endpoint) == b"v2"


def test_s3_list_paginates_and_delete_prefix_batches(s3_endpoint: str, s3_bucket: str) -> None:
    store = open_store(s3_bucket, s3_endpoint_url=s3_endpoint)
    assert isinstance(store, S3Store)
    keys = [f"p/{i:02d}" for i in range(7)]
    for key in keys:
        store.put_bytes(key, b"x")
    store.page_size = 3  # 7 keys need 3 pages
    store.delete_batch = 2  # and 4 DeleteObjects calls
    calls: list[str] = []

    def count(event_name: str, **_: object) -> None:
        calls.append(event_name.split(".")[-1])

    events = store._s3.meta.events
    events.register("before-call.s3.ListObjectsV2", count)
    events.register("before-call.s3.DeleteObjects", count)
    try:
        assert store.list("p/") == keys
        assert calls.count("ListObjectsV2") == 3
        store.delete_prefix("p/")
        assert calls.count("DeleteObjects") == 4
    finally:
        events.unregister("before-call.s3.ListObjectsV2", count)
        events.unregister("before-call.s3.DeleteObjects", count)
    assert store.list() == []


def test_s3_endpoint_comes_from_env_when_not_given(s3_endpoint: str, s3_bucket: str) -> None:
    with env_vars(AWS_ENDPOINT_URL=s3_endpoint):
        store = open_store(s3_bucket)
        store.put_bytes("k", b"v")
        assert store.get_bytes("k") == b"v"


def test_s3_missing_bucket_is_a_store_error_not_a_missing_key(s3_endpoint: str) -> None:
    store = open_store("s3://no-such-bucket-here", s3_endpoint_url=s3_endpoint)
    with pytest.raises(StoreError, match="does not exist"):
        store.get_bytes("k")


def test_s3_unreachable_endpoint_is_a_store_error(s3_endpoint: str) -> None:
    from tests.conftest import free_port

    store = S3Store("s3://bkt", endpoint_url=f"http://127.0.0.1:{free_port()}", timeout_s=1, max_attempts=1)
    with pytest.raises(StoreError, match=r"s3://bkt/k .*endpoint"):
        store.get_bytes("k")


# --------------------------------------------------------------------------- bounded reads, single deletes


def _bounded_reads_hold(store: ObjectStore, tmp_path: Path) -> None:
    """`max_bytes` stops get_bytes and download (nothing left at dest); `delete` takes that key only."""
    assert store.get_bytes("obj", max_bytes=1000) == b"x" * 1000
    with pytest.raises(ObjectTooLarge):
        store.get_bytes("obj", max_bytes=999)
    store.download("obj", tmp_path / "ok.bin", max_bytes=1000)
    with pytest.raises(ObjectTooLarge):
        store.download("obj", tmp_path / "big.bin", max_bytes=10)
    assert not (tmp_path / "big.bin").exists() and not _leftovers(tmp_path)


def test_file_and_http_reads_stop_at_max_bytes(http_server: LocalHttpServer, tmp_path: Path) -> None:
    (http_server.root / "obj").write_bytes(b"x" * 1000)
    (http_server.root / "obj.retry").write_bytes(b"r")
    with open_store(http_server.root.as_uri()) as files, open_store(http_server.url) as http:
        for store in (files, http):
            _bounded_reads_hold(store, tmp_path / type(store).__name__)
        files.delete("obj")
        assert files.list() == ["obj.retry"]


def test_s3_reads_stop_at_max_bytes_and_delete_takes_one_key(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    store = open_store(f"{s3_bucket}/bounded", s3_endpoint_url=s3_endpoint)
    store.put_bytes("obj", b"x" * 1000)
    store.put_bytes("obj.retry", b"r")
    _bounded_reads_hold(store, tmp_path)
    store.delete("obj")
    assert store.list() == ["obj.retry"]
