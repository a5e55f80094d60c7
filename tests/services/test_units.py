"""In-process tests of the small pieces of services/: settings, flags, wire formats, boxes, cache, batcher,
error mapping and the admin guard."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from imgcore.errors import ImageTooLarge, InvalidInput, ModelNotReady, NotFound
from imgcore.image import DecodeLimits
from services.cli import build_parser
from services.cli.serve import settings_from_args
from services.common.admin import admin_guard
from services.common.boxes import clip_box, parse_box_param, parse_boxes_json
from services.common.errors import install_error_handlers
from services.common.settings import EmbedderSettings, GatewaySettings, IndexSettings
from services.common.web import RequestContextMiddleware
from services.common.wire import rgb_body, rgb_from_body, rgb_headers, vectors_from_b64, vectors_to_b64
from services.embedder.batcher import MicroBatcher
from services.gateway.cache import LRUCache


def test_settings_come_from_env_and_flags_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_EMBEDDER_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("IMGSEARCH_EMBEDDER_MODEL_MIRRORS", "file:///a, file:///b")
    monkeypatch.setenv("IMGSEARCH_ADMIN_TOKEN", "t0ken")
    assert EmbedderSettings().max_batch_size == 7
    assert EmbedderSettings().model.mirrors == ["file:///a", "file:///b"]
    args = build_parser().parse_args(["serve", "embedder", "--max-batch-size", "3", "--port", "9001"])
    settings = settings_from_args("embedder", args)
    assert isinstance(settings, EmbedderSettings)
    assert (settings.max_batch_size, settings.server.port) == (3, 9001)
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "t0ken"
    assert "t0ken" not in repr(settings)


def test_bool_flags_and_prefixes() -> None:
    args = build_parser().parse_args(["--log-level", "DEBUG", "serve", "index", "--prefault", "--poll-seconds", "2"])
    settings = settings_from_args("index", args)
    assert isinstance(settings, IndexSettings)
    assert settings.prefault is True and settings.poll_seconds == 2.0
    assert args.log_level == "DEBUG"
    assert IndexSettings.model_config["env_prefix"] == "IMGSEARCH_INDEX_"
    assert GatewaySettings.model_config["env_prefix"] == "IMGSEARCH_GATEWAY_"


def test_every_settings_field_has_a_description() -> None:
    from services.common.settings import SETTINGS_CLASSES
    from services.common.settings_groups import flat_fields

    for cls in SETTINGS_CLASSES.values():
        for name, where in flat_fields(cls).items():
            assert where.info.description, f"{cls.__name__}: {name}"


def test_rgb_wire_round_trip_and_checks() -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    headers = rgb_headers(image)
    back = rgb_from_body(rgb_body(image), headers["x-image-height"], headers["x-image-width"], DecodeLimits())
    assert np.array_equal(back, image)
    body = rgb_body(image)  # the photo's own bytes, flat: sent without a copy
    assert len(body) == image.nbytes and np.shares_memory(np.frombuffer(body, np.uint8), image)
    assert body.readonly  # a body in flight cannot be changed through it
    strided = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)[::2, ::2]  # not contiguous: copied once
    assert bytes(rgb_body(strided)) == strided.tobytes()
    with pytest.raises(InvalidInput):
        rgb_from_body(b"\0" * 17, "2", "3", DecodeLimits())
    with pytest.raises(InvalidInput):
        rgb_from_body(b"", "x", "3", DecodeLimits())
    with pytest.raises(ImageTooLarge):
        rgb_from_body(b"", "100000", "100000", DecodeLimits())


def test_vectors_b64_round_trip() -> None:
    vectors = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    assert np.array_equal(vectors_from_b64(vectors_to_b64(vectors), 5), vectors)
    with pytest.raises(InvalidInput):
        vectors_from_b64(vectors_to_b64(vectors), 4)
    with pytest.raises(InvalidInput):
        vectors_from_b64("not base64!", 5)


def test_boxes_parse_and_clip() -> None:
    assert parse_box_param("1,2,3.5,4") == (1.0, 2.0, 3.5, 4.0)
    assert parse_boxes_json("[[0,0,10,10]]", 4) == [(0.0, 0.0, 10.0, 10.0)]
    assert clip_box((-5, -5, 20, 20), 10, 8) == (0.0, 0.0, 10.0, 8.0)
    for bad in ("1,2,3", "1,2,3,nan", "a,b,c,d"):
        with pytest.raises(InvalidInput):
            parse_box_param(bad)
    for text in ("{}", "[[1,2]]", "nope", "[[0,0,1,1],[0,0,1,1]]"):
        with pytest.raises(InvalidInput):
            parse_boxes_json(text, 1)
    with pytest.raises(InvalidInput):
        clip_box((20, 20, 30, 30), 10, 10)


def test_lru_cache_evicts_least_recently_used() -> None:
    cache: LRUCache[str, int] = LRUCache("unit", 2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    off: LRUCache[str, int] = LRUCache("unit-off", 0)
    off.put("a", 1)
    assert off.get("a") is None


def test_batcher_gathers_concurrent_requests_into_one_batch() -> None:
    seen: list[int] = []
    threads: set[str] = set()

    def run(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        threads.add(threading.current_thread().name)
        return batch * 2

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(run, max_batch_size=16, max_wait_s=0.05)
        batcher.start()
        try:
            rows = [np.full((n, 2), i, np.float32) for i, n in enumerate([1, 2, 3, 1, 1])]
            return await asyncio.gather(*(batcher.submit(r) for r in rows))
        finally:
            await batcher.stop()

    out = asyncio.run(main())
    assert seen == [8]
    assert [o.shape[0] for o in out] == [1, 2, 3, 1, 1]
    assert all(np.all(o == 2 * i) for i, o in enumerate(out))
    assert threads == {"batch_0"}


def test_batcher_respects_max_batch_size_and_reports_errors() -> None:
    seen: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        if np.any(batch < 0):
            raise ValueError("bad row")
        return batch

    async def main() -> None:
        batcher = MicroBatcher(run, max_batch_size=4, max_wait_s=0.02)
        batcher.start()
        try:
            out = await asyncio.gather(*(batcher.submit(np.zeros((3, 1), np.float32)) for _ in range(3)))
            assert [len(o) for o in out] == [3, 3, 3]
            big = await batcher.submit(np.zeros((10, 1), np.float32))  # larger than a batch: run in chunks
            assert len(big) == 10
            with pytest.raises(ValueError):
                await batcher.submit(-np.ones((1, 1), np.float32))
        finally:
            await batcher.stop()

    asyncio.run(main())
    assert max(seen) <= 4


def test_batcher_stopping_answers_every_caller_with_a_503_not_a_500() -> None:
    started = threading.Event()
    release = threading.Event()

    def run(batch: np.ndarray) -> np.ndarray:
        started.set()
        release.wait(5)  # a batch still in the model when the service stops
        return batch

    async def main() -> list[BaseException]:
        batcher = MicroBatcher(run, max_batch_size=1, max_wait_s=0.0)
        batcher.start()
        running = asyncio.create_task(batcher.submit(np.zeros((1, 1), np.float32)))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        queued = asyncio.create_task(batcher.submit(np.zeros((1, 1), np.float32)))
        await asyncio.sleep(0.01)
        await batcher.stop()
        release.set()
        outcomes = await asyncio.wait_for(asyncio.gather(running, queued, return_exceptions=True), 5)
        try:
            await batcher.submit(np.zeros((1, 1), np.float32))  # after the stop
        except ModelNotReady as exc:
            outcomes.append(exc)
        return [o for o in outcomes if isinstance(o, BaseException)]

    errors = asyncio.run(main())
    assert len(errors) == 3  # the running batch's caller, the queued one, the late one: none hangs
    assert all(isinstance(e, ModelNotReady) and e.status == 503 for e in errors), errors


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)

    @app.get("/missing")
    async def missing() -> None:
        raise NotFound("no such thing")

    @app.get("/typed")
    async def typed(k: int) -> dict[str, int]:
        return {"k": k}

    return app


def test_domain_and_validation_errors_map_to_json_bodies() -> None:
    # unexpected exceptions (500 without a stack trace) are tested on a whole service app in test_security
    client = TestClient(_app())
    missing = client.get("/missing")
    assert (missing.status_code, missing.json()) == (404, {"error": "no such thing"})
    typed = client.get("/typed", params={"k": "x"})
    assert typed.status_code == 422 and "k" in typed.json()["error"]
    assert client.get("/typed", params={"k": 1}, headers={"x-request-id": "abc"}).headers["x-request-id"] == "abc"


def test_api_docs_pages_load_their_assets_from_the_service_itself() -> None:
    import re

    from services.common.api_docs import install_api_docs

    app = FastAPI(title="t", docs_url=None, redoc_url=None)
    install_api_docs(app)
    client = TestClient(app)
    for page in ("/docs", "/redoc"):
        resp = client.get(page)
        assert resp.status_code == 200 and "default-src 'self'" in resp.headers["content-security-policy"]
        assert "http://" not in resp.text and "https://" not in resp.text, resp.text  # no CDN, no fonts
        for asset in re.findall(r'(?:src|href)="(/docs-assets/[^"]+)"', resp.text):
            assert client.get(asset).status_code == 200, asset


def test_admin_guard_uses_the_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    def app_with(settings: IndexSettings) -> TestClient:
        app = FastAPI()
        install_error_handlers(app)

        @app.post("/admin/x", dependencies=[Depends(admin_guard(settings))])
        async def x() -> dict[str, bool]:
            return {"ok": True}

        return TestClient(app)

    monkeypatch.delenv("IMGSEARCH_ADMIN_TOKEN", raising=False)
    off = app_with(IndexSettings())
    assert off.post("/admin/x", headers={"authorization": "Bearer "}).status_code == 403
    monkeypatch.setenv("IMGSEARCH_ADMIN_TOKEN", "s3cret-admin-token-for-tests")
    on = app_with(IndexSettings())
    assert on.post("/admin/x").status_code == 401
    assert on.post("/admin/x", headers={"authorization": "Bearer s3cret-admin-token-for-testsX"}).status_code == 401
    assert on.post("/admin/x", headers={"authorization": "Basic s3cret-admin-token-for-tests"}).status_code == 401
    assert on.post("/admin/x", headers={"authorization": "Bearer s3cret-admin-token-for-tests"}).json() == {"ok": True}


def test_batcher_waits_only_for_announced_requests() -> None:
    seen: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        return batch

    async def main() -> float:
        batcher = MicroBatcher(run, max_batch_size=8, max_wait_s=0.5)
        batcher.start()
        try:
            t0 = asyncio.get_running_loop().time()
            await batcher.submit(np.zeros((1, 1), np.float32))  # alone: no wait
            alone = asyncio.get_running_loop().time() - t0
            batcher.announce()
            batcher.announce()
            first = asyncio.create_task(batcher.submit(np.zeros((1, 1), np.float32), announced=True))
            await asyncio.sleep(0.05)
            second = asyncio.create_task(batcher.submit(np.zeros((1, 1), np.float32), announced=True))
            await asyncio.gather(first, second)
            return alone
        finally:
            await batcher.stop()

    alone = asyncio.run(main())
    assert alone < 0.2
    assert seen == [1, 2]


def test_free_ports_chosen_one_after_another_are_all_different() -> None:
    """Services bind seconds after their port is chosen: a port handed out twice makes two share it."""
    from services.stack import free_port

    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
