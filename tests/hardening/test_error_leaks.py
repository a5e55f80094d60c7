"""Error bodies name no internal URI, path, host or query string; the service's log keeps all of it.

Real processes: an index service on a private store whose items' catalog images point at a missing file, at a
presigned URL that is not there and at a store answering 500 (the item images come from the index's thumbnails,
so none of them is fetched), and a gateway whose embedder and detector are dead ports.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from imgcore.card import sha256_file
from services.common.errors import public_text
from services.stack import ServiceProcess, embedder_sha256, free_port, start_service
from tests.conftest import LocalHttpServer
from tests.helpers import clone_version, copy_index_store, set_current
from tests.helpers.http import search
from tests.helpers.paths import DATA
from tests.helpers.wait import wait_until

PHOTO = (DATA / "photos" / "dog.jpg").read_bytes()
SIGNATURE = "X-Amz-Signature=5ecre7519"
PRESIGNED = f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261129&{SIGNATURE}"
# Anything that looks like a URI, an absolute path, a host:port or an IPv4 address.
LEAK = re.compile(r"[a-z][a-z0-9+.-]*://|(?<![\w.])/[\w.-]+/|\b[\w.-]+:\d{2,5}\b|\d+\.\d+\.\d+\.\d+|X-Amz|\?\w+=")


@dataclass
class Leaky:
    gateway: ServiceProcess
    index: ServiceProcess
    root: Path
    dead_port: int
    items: dict[str, str]  # case -> item id
    store: LocalHttpServer


def _point_images(version_dir: Path, images: dict[str, str]) -> None:
    """Give items other image URIs (as a catalog that moved would), keeping the manifest's sha256 true."""
    meta = version_dir / "meta.sqlite"
    with sqlite3.connect(meta) as db:
        for item_id, uri in images.items():
            db.execute("UPDATE items SET image = ? WHERE item_id = ?", (uri, item_id))
    db.close()
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["files"]["meta.sqlite"] = sha256_file(meta)
    (version_dir / "manifest.json").write_text(json.dumps(manifest))


def _item_ids(store: Path, n: int) -> list[str]:
    version = (store / "CURRENT").read_text().strip()
    with sqlite3.connect(store / "versions" / version / "meta.sqlite") as db:
        rows = db.execute("SELECT item_id FROM items ORDER BY aid LIMIT ?", (n,)).fetchall()
    db.close()
    return [str(r[0]) for r in rows]


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Leaky]:
    root = tmp_path_factory.mktemp("leaks")
    (root / "http-root").mkdir()
    server = LocalHttpServer(root / "http-root")
    store = copy_index_store(root / "store")
    missing_file, presigned_404, store_500 = _item_ids(store, 3)
    images = {
        missing_file: (root / "catalog" / "images" / "0007.png").as_uri(),
        presigned_404: f"{server.url}/bucket/0008.png{PRESIGNED}",
        store_500: f"{server.url}/bucket/0009.png{PRESIGNED}",
    }
    set_current(store, clone_version(store, "20261129T000000Z-leaks", lambda d: _point_images(d, images)))
    index_args = ["--index-uri", store.as_uri(), "--local-dir", str(root / "index-cache")]
    index_args += ["--embedder-sha256", str(embedder_sha256())]
    index = start_service("index", free_port(), args=index_args, log_path=root / "index.log")
    dead = free_port()  # nothing listens there: the embedder and detector are "down"
    gateway = start_service(
        "gateway",
        free_port(),
        log_path=root / "gateway.log",
        args=[
            f"--index-url={index.url}",
            f"--embedder-url=http://127.0.0.1:{dead}",
            f"--detector-url=http://127.0.0.1:{dead}",
            "--retries=0",
        ],
    )
    cases = {"missing_file": missing_file, "presigned_404": presigned_404, "store_500": store_500}
    try:
        index.wait_ready(120)
        wait_until(
            lambda: httpx.get(gateway.url + "/livez", trust_env=False).status_code == 200,
            60,
            ignoring=httpx.HTTPError,
            service=gateway,
        )
        yield Leaky(gateway, index, root, dead, cases, server)
    finally:
        gateway.stop()
        index.stop()
        server.close()


def _assert_public(resp: httpx.Response, *secrets: str) -> str:
    body = resp.json()
    assert set(body) == {"error"}, body
    text = str(body["error"])
    assert not LEAK.search(text), text
    for secret in secrets:
        assert secret not in text, (secret, text)
    return text


def _log(svc: ServiceProcess) -> str:
    assert svc.log_path is not None
    return svc.log_path.read_text(errors="replace")


@pytest.mark.stack
@pytest.mark.parametrize("case", ["missing_file", "presigned_404", "store_500"])
def test_item_images_come_from_the_index_so_no_catalog_uri_can_leak(leaky: Leaky, case: str) -> None:
    """Item images were fetched from the catalog's URIs and their errors named them; now the index's own
    thumbnails answer, and the catalog host is never asked."""
    name = {"missing_file": "0007.png", "presigned_404": "0008.png", "store_500": "0009.png"}[case]
    leaky.store.fail(f"/bucket/{name}", times=10, status=500)
    resp = httpx.get(f"{leaky.gateway.url}/v1/items/{leaky.items[case]}/image", trust_env=False, timeout=30)
    assert resp.status_code == 200, resp.text
    # The catalog's small plain PNGs are their own thumbnails (ann_index.build.thumb_reuse), kept in the index.
    assert resp.headers["content-type"] == "image/png" and resp.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert leaky.store.count(f"/bucket/{name}") == 0


@pytest.mark.stack
def test_unknown_item_image_is_a_plain_404(leaky: Leaky) -> None:
    resp = httpx.get(f"{leaky.gateway.url}/v1/items/no-such-item/image", trust_env=False, timeout=30)
    assert resp.status_code == 404, resp.text
    _assert_public(resp, str(leaky.root), "file:", leaky.store.url)


@pytest.mark.stack
def test_dead_backend_names_no_host_or_port_but_the_log_does(leaky: Leaky) -> None:
    resp = search(leaky.gateway.url, PHOTO, k=3)
    assert resp.status_code == 503, resp.text
    text = _assert_public(resp, str(leaky.dead_port), "127.0.0.1")
    assert "embedder" in text  # the caller still learns which stage failed
    wait_until(lambda: f"127.0.0.1:{leaky.dead_port}" in _log(leaky.gateway), 5)


@pytest.mark.parametrize(
    ("message", "kept", "gone"),
    [
        ("not found: file:///srv/catalog/images/0007.png", "not found: ", "/srv/catalog"),
        ("GET https://b.s3.example.com/k.png?X-Amz-Signature=abc failed: HTTP 403", "failed: HTTP 403", "abc"),
        ("cannot read s3://b/k (endpoint http://minio.store.svc.cluster.local:9000): timeout", "timeout", "minio"),
        ("cannot connect to minio:9000", "cannot connect to", "9000"),
        ("Connect call failed ('10.1.2.3', 8101)", "Connect call failed", "10.1.2.3"),
        ("[Errno 2] No such file or directory: '/var/lib/imgsearch/index/x'", "No such file", "/var/lib"),
        ("cannot load ONNX model models/fmnist-lite0/model.onnx: bad", "cannot load ONNX model", "fmnist-lite0/"),
        ("host [::1]:8000 refused", "refused", "::1"),
    ],
)
def test_public_text_masks_uris_paths_and_hosts(message: str, kept: str, gone: str) -> None:
    text = public_text(message)
    assert kept in text and gone not in text, text
    assert not LEAK.search(text), text


@pytest.mark.parametrize(
    "message",
    [
        "k: Input should be a valid integer",
        "image exceeds 20000000 bytes",
        "content type image/svg+xml is not supported",
        "T-shirt/top has no item 'fmnist-train-00007'",
        "detector did not answer within 0.5s",
        "index was built with embedder fmnist-lite0 (sha256 0123abcd), not this one",
    ],
)
def test_public_text_leaves_ordinary_messages_alone(message: str) -> None:
    assert public_text(message) == message
