"""Security hardening: the admin guard, secrets kept out of every answer and log, no server-side fetching of
caller-supplied URLs, no stack traces in error bodies, and model/index compatibility enforced end to end.

`tests/services/index/test_index_service.py` covers 401 without/with a wrong token and 403 with admin off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.requests import Request

from imgcore.errors import ImgSearchError
from services import defaults
from services.common.admin import admin_guard
from services.common.errors import AdminDisabled, Unauthorized
from services.common.settings import IndexSettings
from services.common.web import create_service_app
from services.stack import ServiceProcess, free_port, start_service
from tests.conftest import LocalHttpServer
from tests.helpers import ADMIN_TOKEN, Stack, shared_stack
from tests.helpers.http import search
from tests.helpers.paths import DATA, REPO
from tests.helpers.wait import wait_until

PHOTO = (DATA / "photos" / "dog.jpg").read_bytes()


@pytest.fixture(scope="module")
def stack() -> Stack:
    return shared_stack()


# --------------------------------------------------------------------------- admin guard


def _request(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode("latin-1"))]
    return Request({"type": "http", "method": "POST", "path": "/admin/reload", "headers": headers})


def test_admin_token_is_compared_with_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    guard = admin_guard(IndexSettings(admin_token=SecretStr("s3cret-admin-token-for-tests-token")))
    guard(_request("Bearer s3cret-admin-token-for-tests-token"))
    with pytest.raises(Unauthorized):
        guard(_request("Bearer s3cret-admin-token-for-tests-tokeX"))
    assert calls == [
        (b"s3cret-admin-token-for-tests-token", b"s3cret-admin-token-for-tests-token"),
        (b"s3cret-admin-token-for-tests-tokeX", b"s3cret-admin-token-for-tests-token"),
    ]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic s3cret-admin-token-for-tests-token",
        "s3cret-admin-token-for-tests-token",
        "Bearer s3cret-admin-token-for-tests-token2",
        "Bearer s3cret",
        "Bearer S3CRET-TOKEN",
        "Bearer s3cret-admin-token-for-tests-token\x00",
    ],
)
def test_admin_guard_refuses_anything_but_the_exact_bearer_token(header: str | None) -> None:
    guard = admin_guard(IndexSettings(admin_token=SecretStr("s3cret-admin-token-for-tests-token")))
    with pytest.raises(Unauthorized) as info:
        guard(_request(header))
    assert info.value.status == 401


@pytest.mark.parametrize("token", [None, ""])
def test_admin_is_off_without_a_token_whatever_the_caller_sends(token: str | None) -> None:
    settings = IndexSettings(admin_token=None if token is None else SecretStr(token))
    with pytest.raises(AdminDisabled) as info:
        admin_guard(settings)(_request("Bearer "))
    assert info.value.status == 403


@pytest.mark.parametrize(
    "token",
    [
        "REPLACE_ME",
        "changeme",
        "<admin-token>",
        "REPLACE_ME_WITH_A_LONG_RANDOM_TOKEN",
        "short-but-random-7f3a",
        "x" * 23,
    ],
)
def test_placeholder_or_short_admin_token_turns_admin_off_with_an_error_line(
    token: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="imgsearch.admin"):
        guard = admin_guard(IndexSettings(admin_token=SecretStr(token)))
    with pytest.raises(AdminDisabled):
        guard(_request(f"Bearer {token}"))  # the very value in the Secret does not open admin
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "IMGSEARCH_ADMIN_TOKEN" in errors[0].getMessage()
    assert token not in caplog.text  # why, never the value


def test_random_admin_token_of_24_characters_is_accepted(caplog: pytest.LogCaptureFixture) -> None:
    token = "9f2c4e1a7b3d5f60a8c2e4b1"
    assert len(token) == 24
    guard = admin_guard(IndexSettings(admin_token=SecretStr(token)))
    guard(_request(f"Bearer {token}"))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _base_admin_secret() -> str:
    docs = yaml.safe_load_all((REPO / "k8s" / "base" / "secrets.yaml").read_text())
    secret = next(d for d in docs if d and d["metadata"]["name"] == "imgsearch-admin")
    return str(secret["stringData"]["IMGSEARCH_ADMIN_TOKEN"])


@pytest.mark.stack
def test_index_started_with_the_base_placeholder_secret_keeps_admin_off(stack: Stack, tmp_path: Path) -> None:
    """`kubectl apply -k k8s/base` as is: the index gets the committed placeholder, which opens nothing."""
    placeholder = _base_admin_secret()
    args = [a.replace(str(stack.root / "index-cache"), str(tmp_path / "cache")) for a in stack.args["index"]]
    log_path = tmp_path / "index.log"
    index = start_service(
        "index", free_port(), args=args, env={"IMGSEARCH_ADMIN_TOKEN": placeholder}, log_path=log_path
    )
    try:
        _wait_listening(index)
        resp = httpx.post(
            index.url + "/admin/reload", headers={"authorization": f"Bearer {placeholder}"}, trust_env=False
        )
        assert resp.status_code == 403, resp.text
        lines = [line for line in log_path.read_text().splitlines() if " ERROR imgsearch.admin " in line]
        assert lines and "IMGSEARCH_ADMIN_TOKEN is a placeholder" in lines[0]
    finally:
        index.stop()


def test_admin_token_cannot_be_given_as_a_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "index", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--admin-token" not in out and "IMGSEARCH_ADMIN_TOKEN" in out


@pytest.mark.stack
def test_admin_token_never_appears_in_answers_or_logs(stack: Stack) -> None:
    index = stack.url("index")
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Bearer {ADMIN_TOKEN}"}):
        httpx.post(index + "/admin/reload", headers=headers, trust_env=False, timeout=60)
    for service in ("detector", "embedder", "index", "gateway"):
        base = stack.url(service)
        for path in ("/readyz", "/metrics", "/openapi.json", "/livez"):
            assert ADMIN_TOKEN not in httpx.get(base + path, trust_env=False, timeout=10).text, (service, path)
    for log in (stack.root / "logs").glob("*.log"):
        assert ADMIN_TOKEN not in log.read_text(errors="replace"), log


@pytest.mark.stack
def test_gateway_exposes_no_admin_endpoint(stack: Stack) -> None:
    spec = httpx.get(stack.gateway_url + "/openapi.json", trust_env=False).json()
    assert not [p for p in spec["paths"] if p.startswith("/admin")]
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    resp = httpx.post(stack.gateway_url + "/admin/reload", headers=headers, trust_env=False)
    assert resp.status_code in (404, 405) and set(resp.json()) == {"error"}


# --------------------------------------------------------------------------- no fetching of caller URLs


@pytest.mark.stack
def test_gateway_never_fetches_a_url_given_by_the_caller(stack: Stack, http_server: LocalHttpServer) -> None:
    """Search by URL is not offered: URL-looking parameters and fields are ignored, nothing is fetched."""
    (http_server.root / "photo.jpg").write_bytes(PHOTO)
    target = http_server.url + "/photo.jpg"
    spec = httpx.get(stack.gateway_url + "/openapi.json", trust_env=False).json()
    params = [p["name"] for ops in spec["paths"].values() for op in ops.values() for p in op.get("parameters", [])]
    assert not {"url", "image_url", "uri", "src"} & set(params)
    gw = stack.gateway_url + "/v1/search"
    attempts = [
        httpx.post(gw, params={"url": target, "image_url": target}, files={"x": ("a", b"1")}, trust_env=False),
        httpx.post(gw, data={"url": target, "image": target}, files={"other": ("a", b"1")}, trust_env=False),
        httpx.post(gw, json={"url": target}, trust_env=False),
    ]
    for resp in attempts:
        assert 400 <= resp.status_code < 500 and set(resp.json()) == {"error"}, resp.text
    assert http_server.requests == []  # not one request reached the "remote" server


@pytest.mark.stack
@pytest.mark.parametrize("item_id", ["..%2F..%2Fadmin%2Freload", "%2e%2e", "a%00b", "%2Fetc%2Fpasswd", "x" * 2000])
def test_odd_item_ids_are_plain_4xx_json(stack: Stack, item_id: str) -> None:
    for suffix in ("/image", "/similar"):
        resp = httpx.get(stack.gateway_url + f"/v1/items/{item_id}{suffix}", trust_env=False, timeout=30)
        assert 400 <= resp.status_code < 500, (item_id, suffix, resp.status_code)
        assert set(resp.json()) == {"error"}


# --------------------------------------------------------------------------- errors never carry a stack trace


def test_unexpected_exception_becomes_a_500_json_without_stack_trace(caplog: pytest.LogCaptureFixture) -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield

    def ready() -> tuple[bool, dict[str, object]]:
        return True, {}

    app = create_service_app(title="t", description="t", readiness=ready, lifespan=lifespan)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail at /srv/app/module.py line 12")

    @app.get("/domain")
    async def domain() -> None:
        raise ImgSearchError("storage said no")

    async def call() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.get("/boom", headers={"x-request-id": "rid-123"}), await client.get("/domain")

    resp, domain_resp = asyncio.run(call())
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal error"}
    assert resp.headers["x-request-id"] == "rid-123"
    assert domain_resp.status_code == 500 and domain_resp.json() == {"error": "storage said no"}
    assert "secret detail" in caplog.text  # the details go to the log, for operators


# --------------------------------------------------------------------------- model / index compatibility


def _other_embedder_model(dest: Path) -> Path:
    """The same network saved with one extra metadata entry: another sha256, same shapes and outputs."""
    import onnx

    src = Path(defaults.MODELS_DIR) / "fmnist-lite0"
    dest.mkdir(parents=True)
    model = onnx.load(str(src / "model.onnx"))
    entry = model.metadata_props.add()
    entry.key, entry.value = "imgsearch-test", "a different model"
    onnx.save(model, str(dest / "model.onnx"))
    card = json.loads((src / "card.json").read_text())
    card["sha256"] = hashlib.sha256((dest / "model.onnx").read_bytes()).hexdigest()
    card["version"] = "other"
    (dest / "card.json").write_text(json.dumps(card))
    return dest


@pytest.fixture(scope="module")
def mismatched_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A gateway whose embedder serves a model the index was not built with."""
    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("mismatch")
    model = _other_embedder_model(root / "store" / "fmnist-lite0")
    embedder = start_service(
        "embedder",
        free_port(),
        args=["--model-uri", model.as_uri(), "--model-cache-dir", str(root / "cache")],
        log_path=root / "embedder.log",
    )
    gateway = start_service(
        "gateway",
        free_port(),
        log_path=root / "gateway.log",
        args=[
            f"--detector-url={stack.url('detector')}",
            f"--embedder-url={embedder.url}",
            f"--index-url={stack.url('index')}",
        ],
    )
    try:
        embedder.wait_ready(120)
        _wait_listening(gateway)  # never ready: that is what the tests check
        yield gateway
    finally:
        gateway.stop()
        embedder.stop()
        shutil.rmtree(root, ignore_errors=True)


def _wait_listening(svc: ServiceProcess) -> None:
    def listening() -> bool:
        return httpx.get(svc.url + "/livez", trust_env=False, timeout=2).status_code > 0

    wait_until(listening, 60, ignoring=httpx.HTTPError, service=svc)


@pytest.mark.stack
def test_gateway_is_not_ready_when_the_embedder_is_not_the_one_the_index_was_built_with(
    mismatched_gateway: ServiceProcess,
) -> None:
    resp = httpx.get(mismatched_gateway.url + "/readyz", trust_env=False, timeout=10)
    assert resp.status_code == 503
    assert "index was built with embedder" in resp.json()["error"]


@pytest.mark.stack
def test_search_refuses_to_query_an_index_with_vectors_of_another_embedder(
    mismatched_gateway: ServiceProcess,
) -> None:
    resp = search(mismatched_gateway.url, PHOTO, k=3)
    assert resp.status_code == 503, resp.text[:300]
    assert "embedder" in resp.json()["error"]
