"""`GET /v1/items/{id}/image` serves the thumbnail the rebuild put in the index, never the catalog's image URL.

The attack (issue 13, finding 2): the gateway fetched each item's catalog image at request time, so a
catalog host could make it follow a redirect, send a 64 MiB body that was then cached, or stall and tie up
its worker threads (searches waited behind it). Here the catalog is served over HTTP by a host we control;
after the build every image path turns hostile (stalled or 64 MiB), and the gateway must answer every item
image without a single request reaching that host; then the catalog folder is deleted outright.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.thumbs import MAX_SIDE, THUMBS_NAME
from embedder import Embedder
from services.defaults import DEFAULT_EMBEDDER_DIR
from tests.conftest import LocalHttpServer
from tests.helpers import ADMIN_TOKEN, Stack, clone_version, current_version, running_stack
from tests.helpers.http import search
from tests.helpers.paths import DATA

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(not (DEFAULT_EMBEDDER_DIR / "model.onnx").is_file(), reason="embedder model missing"),
]

ITEMS = 300
STALL_S = 30.0


@dataclass
class HostedCatalog:
    stack: Stack
    host: LocalHttpServer
    folder: Path  # the catalog folder the host serves
    ids: list[str]


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostedCatalog]:
    """An index built from a catalog on an HTTP image host, and a stack serving it."""
    root = tmp_path_factory.mktemp("image-host")
    catalog = write_fmnist_catalog(root / "shop", limit=ITEMS)
    host = LocalHttpServer(root)
    store = tmp_path_factory.mktemp("index") / "store"
    embedder = Embedder(DEFAULT_EMBEDDER_DIR, intra_threads=2, batch_size=32, allow_spinning=False)
    rebuild(f"{host.url}/shop/catalog.jsonl", store.as_uri(), embedder, RebuildOptions(progress=False, keep=5))
    ids = [json.loads(line)["item_id"] for line in catalog.read_text().splitlines()]
    try:
        with running_stack(index_store=store) as stack:
            yield HostedCatalog(stack, host, catalog.parent, ids)
    finally:
        host.close()


def _image(gw: str, item_id: str, timeout: float = 10.0) -> httpx.Response:
    return httpx.get(f"{gw}/v1/items/{quote(item_id, safe='')}/image", trust_env=False, timeout=timeout)


def _assert_thumbnail(resp: httpx.Response) -> None:
    assert resp.status_code == 200, resp.text
    # The demo's 112 px plain PNGs are their own thumbnails (ann_index.build.thumb_reuse).
    assert resp.headers["content-type"] == "image/png"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["cache-control"] == "public, max-age=3600"
    img = Image.open(io.BytesIO(resp.content))
    img.load()  # the whole image decodes
    assert img.format == "PNG" and max(img.size) <= MAX_SIDE


def test_item_images_never_reach_a_hostile_catalog_host(hosted: HostedCatalog) -> None:
    images = hosted.folder / "images"
    stalled = hosted.ids[: ITEMS // 2]
    for item_id in stalled:  # a slow host: every image stalls for longer than any budget
        hosted.host.stall(f"/shop/images/{item_id}.png", STALL_S, times=10)
    huge = b"\x89PNG\r\n\x1a\n" + b"\0" * (64 * 1024 * 1024)
    for item_id in hosted.ids[ITEMS // 2 : ITEMS // 2 + 3]:  # a huge body
        (images / f"{item_id}.png").write_bytes(huge)
    before = len(hosted.host.requests)
    gw = hosted.stack.gateway_url
    photo = (DATA / "photos" / "dog.jpg").read_bytes()
    with ThreadPoolExecutor(max_workers=46) as pool:
        answers = pool.map(lambda item_id: _image(gw, item_id, timeout=STALL_S), stalled[:45])
        t0 = time.perf_counter()
        searched = search(gw, photo, k=3)
        search_s = time.perf_counter() - t0
        for resp in answers:
            _assert_thumbnail(resp)
    for item_id in hosted.ids[ITEMS // 2 : ITEMS // 2 + 3]:
        _assert_thumbnail(_image(gw, item_id))
    assert searched.status_code == 200 and search_s < 10, search_s  # was 24 s behind 45 stalled image fetches
    assert hosted.host.requests[before:] == []  # not one request reached the catalog's host


def test_every_item_image_survives_the_catalog_folder_being_deleted(hosted: HostedCatalog) -> None:
    shutil.rmtree(hosted.folder)
    gw = hosted.stack.gateway_url
    for item_id in hosted.ids:
        _assert_thumbnail(_image(gw, item_id))
    unknown = _image(gw, "no-such-item")
    assert unknown.status_code == 404 and "not in index" in unknown.json()["error"]


def test_the_index_service_serves_the_thumbnail_itself(hosted: HostedCatalog) -> None:
    resp = httpx.get(f"{hosted.stack.url('index')}/v1/items/{hosted.ids[0]}/image", trust_env=False)
    _assert_thumbnail(resp)
    assert resp.content == _image(hosted.stack.gateway_url, hosted.ids[0]).content


def _without_thumbnails(version_dir: Path) -> None:
    """A version as published before thumbnails: no thumbs.bin, none in the manifest."""
    (version_dir / THUMBS_NAME).unlink()
    manifest = json.loads((version_dir / "manifest.json").read_text())
    del manifest["files"][THUMBS_NAME], manifest["thumbnails"]
    (version_dir / "manifest.json").write_text(json.dumps(manifest))


def test_an_index_version_without_thumbnails_answers_404_not_500(hosted: HostedCatalog) -> None:
    store, stack = hosted.stack.index_store, hosted.stack
    served = current_version(store)
    old = clone_version(store, served.split("-")[0] + "-0ld0ld00", _without_thumbnails)
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    reload = f"{stack.url('index')}/admin/reload"
    try:
        resp = httpx.post(reload, params={"version": old}, headers=auth, trust_env=False, timeout=60)
        assert resp.status_code == 200 and resp.json()["version"] == old, resp.text
        answer = _image(stack.gateway_url, hosted.ids[0])
        assert answer.status_code == 404, answer.text
        assert "no item thumbnails" in answer.json()["error"] and "rebuild" in answer.json()["error"]
        assert search(stack.gateway_url, (DATA / "photos" / "dog.jpg").read_bytes(), k=2).status_code == 200
    finally:
        httpx.post(reload, params={"version": served}, headers=auth, trust_env=False, timeout=60)
