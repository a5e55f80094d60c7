"""The gateway and the index service refuse a k out of range alike (imgcore.retrieval.check_k), before any
backend or index is touched: their routes run here on stand-ins that would fail if reached."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common.errors import install_error_handlers
from services.common.settings import GatewaySettings, IndexSettings
from services.gateway.app import build_router as gateway_router
from services.index.app import build_router as index_router


def _client(router: Any) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    return TestClient(app)


@pytest.fixture(scope="module")
def gateway() -> TestClient:
    unreachable = cast(Any, SimpleNamespace(index=SimpleNamespace()))
    return _client(gateway_router(GatewaySettings(max_k=50), cast(Any, None), unreachable))


@pytest.fixture(scope="module")
def index() -> TestClient:
    return _client(index_router(IndexSettings(max_k=50), cast(Any, None)))


@pytest.mark.parametrize("k", [0, 51])
def test_the_gateway_refuses_k_out_of_range(gateway: TestClient, k: int) -> None:
    search = gateway.post("/v1/search", params={"k": k}, files={"image": ("p", b"x")})
    similar = gateway.get("/v1/items/a/similar", params={"k": k})
    for resp in (search, similar):
        assert (resp.status_code, resp.json()) == (400, {"error": "k must be between 1 and 50"})


def test_the_index_service_refuses_k_out_of_range(index: TestClient) -> None:
    query = index.post("/v1/query", json={"vectors": [[1.0, 0.0]], "k": 51})
    similar = index.get("/v1/items/a/similar", params={"k": 51})
    for resp in (query, similar):
        assert (resp.status_code, resp.json()) == (400, {"error": "k must be between 1 and 50"})
    # Below 1, the request's own schema refuses it first (422), as before check_k was shared.
    assert index.post("/v1/query", json={"vectors": [[1.0, 0.0]], "k": 0}).status_code == 422
