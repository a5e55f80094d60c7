"""The gateway app: `/v1/search`, items' similar items and images, readiness of the whole chain."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from imgcore.index_wire import GROUP_PRODUCT, check_category, check_item_id
from imgcore.index_wire import thumbnail_media_type as media_type
from imgcore.retrieval import check_k
from services.common.boxes import parse_box_param
from services.common.errors import BackendUnavailable
from services.common.malloc import IdleTrim, limit_arenas
from services.common.settings import GatewaySettings
from services.common.uploads import MULTIPART_IMAGE_BODY, read_upload
from services.common.web import create_service_app
from services.common.web_json import json_response
from services.gateway.backends import Backends
from services.gateway.query_log import QueryLog
from services.gateway.regions import public_result
from services.gateway.search import SearchParams, SearchService
from services.gateway.served_index import ServedIndex
from services.gateway.served_models import ServedModels
from services.gateway.supervise import supervised

# The public search takes encoded images only: raw pixels are the gateway's own format to its backends.
_PUBLIC_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        **MULTIPART_IMAGE_BODY["requestBody"],
        "content": {"multipart/form-data": MULTIPART_IMAGE_BODY["requestBody"]["content"]["multipart/form-data"]},
    }
}
# The index's thumbnails are public catalog content; nosniff keeps a browser from reading them as anything else.
IMAGE_HEADERS = {"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"}


def thumbnail_type(data: bytes) -> str | None:
    """The media type of an index thumbnail from its magic number (WebP, JPEG or PNG); None otherwise."""
    try:
        return media_type(data)
    except ValueError:
        return None


class Readiness:
    """The gateway is ready when all three backends are and the index belongs to the serving embedder."""

    def __init__(self, backends: Backends, index: ServedIndex, models: ServedModels, ttl_s: float = 1.0) -> None:
        self.backends = backends
        self.index = index
        self.models = models
        self.ttl_s = ttl_s
        self._last: tuple[float, bool, dict[str, Any]] | None = None

    async def __call__(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.ttl_s:
            return self._last[1], self._last[2]
        names = ("detector", "embedder", "index")
        answers = await asyncio.gather(
            self.backends.readiness("detector"), self.backends.readiness("embedder"), self.index.readiness()
        )
        details: dict[str, Any] = {"backends": {n: {"ready": ok} for n, (ok, _) in zip(names, answers, strict=True)}}
        ready = all(ok for ok, _ in answers)
        for name, (ok, body) in zip(names, answers, strict=True):
            if not ok:
                details["backends"][name]["error"] = body.get("error") or body.get("loading") or "not ready"
        index_body, embedder_body = answers[2][1], answers[1][1]
        if answers[2][0]:
            self.index.note(index_body)
        self.models.note(answers[0], answers[1])  # so a ready gateway knows what its cached answers are keyed by
        bound = ((index_body.get("index") or {}).get("embedder") or {}).get("sha256")
        serving = (embedder_body.get("model") or {}).get("sha256")
        if bound and serving and bound != serving:
            ready = False
            details["error"] = f"index was built with embedder {bound[:12]}, embedder serves {serving[:12]}"
        details["index_version"] = self.index.version
        self._last = (now, ready, details)
        return ready, details


Group = Literal["product", "none"]
FILTER_QUERY = Query(None, description='Only items passing it, e.g. `brand IN ("Mori") AND price < 10000`.')
GROUP_QUERY = Query(GROUP_PRODUCT, description="`product`: one result per product (default); `none`: per image.")
DEDUPE_QUERY = Query(False, description="Leave out results that are near-duplicates of a higher-ranked one.")


def listing_params(
    filter: str | None = FILTER_QUERY, group: Group = GROUP_QUERY, dedupe: bool = DEDUPE_QUERY
) -> dict[str, Any]:
    """How results are listed (issue 28): the filter, the grouping and near-duplicate collapsing."""
    return {"filter": filter or None, "group": group, "dedupe": dedupe}


LISTING = Depends(listing_params)


def build_router(settings: GatewaySettings, backends: Backends, search: SearchService) -> APIRouter:
    """Public routes of the gateway."""
    router = APIRouter(prefix="/v1", tags=["search"])
    _search_route(router, settings, search)
    _item_routes(router, settings, search.index)
    return router


def _checked_k(settings: GatewaySettings, k: int | None) -> int:
    return check_k(settings.search.default_k if k is None else k, settings.search.max_k)


def _search_route(router: APIRouter, settings: GatewaySettings, search: SearchService) -> None:
    @router.post("/search", openapi_extra=_PUBLIC_IMAGE_BODY)
    async def search_photo(
        request: Request,
        k: int | None = Query(None, description="Results per item (default 10)."),
        category: str | None = Query(None, description="Search only this catalog category."),
        box: str | None = Query(None, description="x1,y1,x2,y2: search only this region of the photo."),
        listing: dict[str, Any] = LISTING,
    ) -> Response:
        """Similar catalog items for every item detected in the photo (or for one region, or the whole photo)."""
        box_param = parse_box_param(box) if box else None
        check_category(category)
        params = SearchParams(k=_checked_k(settings, k), category=category or None, box=box_param, **listing)
        upload = await read_upload(request, search.limits, accept_pixels=False)
        body = await search.search(upload, params)
        request.app.state.query_log.offer(upload.data or b"", params, body)  # queued at most; written later
        return Response(body, media_type="application/json")


def _item_routes(router: APIRouter, settings: GatewaySettings, index: ServedIndex) -> None:
    @router.get("/items/{item_id}/similar")
    async def similar(
        item_id: str,
        k: int | None = Query(None, description="Number of similar items (default 10)."),
        category: str | None = Query(None, description="Only items of this category."),
        listing: dict[str, Any] = LISTING,
    ) -> Response:
        """Catalog items most like this catalog item (other products by default)."""
        params: dict[str, Any] = {"k": _checked_k(settings, k), "group": listing["group"]}
        check_item_id(item_id)
        if check_category(category):
            params["category"] = category
        params.update({name: listing[name] for name in ("filter", "dedupe") if listing[name]})
        found = await index.similar(item_id, params)
        body = {
            "item": public_result({**found["item"], "score": 1.0}),
            "results": [public_result(h) for h in found["results"]],
            "index_version": found.get("version"),
        }
        if found.get("partial"):  # a partitioned index answered without some partitions (issue 16)
            body.update(partial=True, missing_partitions=found["missing_partitions"])
        return json_response(body)

    @router.get("/items/{item_id}/image", response_class=Response)
    async def item_image(item_id: str) -> Response:
        """An item's thumbnail (at most 256 px, for result lists), from the served index; never the catalog's URL."""
        check_item_id(item_id)
        data = await index.image(item_id)
        media_type = thumbnail_type(data)
        if media_type is None:  # what reaches a browser from here is an image or nothing
            raise BackendUnavailable(f"index: the thumbnail of {item_id!r} is not a WebP, JPEG or PNG image")
        return Response(data, media_type=media_type, headers=IMAGE_HEADERS)


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway app."""
    limit_arenas(1)  # before the decode threads start: they share the one arena that IdleTrim trims
    backends = Backends(settings.backends)
    search = SearchService(settings, backends)
    query_log = QueryLog(settings, search.decode_budget)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        every_s = settings.backends.index_check_seconds
        watcher = supervised("index_watch", lambda: search.index.watch(every_s))
        models_watcher = supervised("models_watch", lambda: search.models.watch(every_s))
        writer = await query_log.start() if query_log.enabled else None
        search.shadow.start()
        yield
        watcher.cancel()
        models_watcher.cancel()
        await search.shadow.stop()
        if writer is not None:
            await query_log.stop(writer)
        await backends.close()

    app = create_service_app(
        title="imgsearch gateway",
        description="Similar-item image search: upload a photo, get similar catalog items for each item in it.",
        readiness=Readiness(backends, search.index, search.models),
        lifespan=lifespan,
    )
    # The one arena keeps a photo's megabytes for the next photo, and hands them back once the gateway is idle.
    app.add_middleware(IdleTrim)
    app.state.search = search
    app.state.query_log = query_log
    app.include_router(build_router(settings, backends, search))
    index_html = settings.static_dir / "index.html"

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        """The web page, when one is installed."""
        if index_html.is_file():
            return FileResponse(index_html)
        return json_response({"service": "imgsearch gateway", "docs": "/docs", "search": "POST /v1/search"})

    if settings.static_dir.is_dir():
        app.mount("/static", StaticFiles(directory=settings.static_dir), name="static")
    return app
