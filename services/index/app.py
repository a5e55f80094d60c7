"""The index service: nearest catalog items for query vectors, item look-up, and index hot-swap."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ann_index.serving.fresh_view import FreshView
from ann_index.serving.prints import PrintCache
from imgcore.index_wire import GROUP_PRODUCT, check_category, check_item_id, product_key
from imgcore.retrieval import check_k
from services.common.admin import admin_guard
from services.common.metrics import STAGE_SECONDS
from services.common.settings import IndexSettings
from services.common.web import create_service_app
from services.common.web_json import json_response
from services.index import fanout
from services.index.holder import IndexHolder
from services.index.partition_holder import PartitionHolder
from services.index.query import (
    FILTER_TEXT,
    GROUP_TEXT,
    Group,
    QueryRequest,
    answers_inline,
    categories_of,
    found_hits,
    options_of,
    vectors_of,
)

# Thumbnails are public catalog content; nosniff keeps a browser from reading them as anything but an image.
IMAGE_HEADERS = {"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"}


# A partitioned gateway pins every call of one answer to one version (issue 16): 409 when it is not held here.
PINNED_VERSION = Query(None, description="Answer from this index version only (409 when it is not held).")
GROUP_QUERY = Query(GROUP_PRODUCT, description=GROUP_TEXT)


def build_router(settings: IndexSettings, holder: IndexHolder) -> APIRouter:
    """Public routes of the index service."""
    router = APIRouter(prefix="/v1", tags=["index"])
    prints = PrintCache()
    queries = [0]  # /v1/query requests in this process now (the event loop's thread only)

    @router.post("/query")
    async def query(req: QueryRequest, version: str | None = PINNED_VERSION) -> Response:
        """Top-k catalog items per query vector, best first (cosine score), optionally within a category."""
        check_k(req.k, settings.max_k)
        vectors = vectors_of(req, settings.max_vectors)
        categories = categories_of(req, len(vectors))
        options = options_of(req.filter, req.group)  # a malformed filter is a 400 before any index is used
        t0 = time.perf_counter()

        def run(reader: FreshView) -> tuple[str, int, list[list[Any]]]:
            return reader.version, reader.changes, found_hits(reader, vectors, req, categories, options, prints)

        queries[0] += 1
        try:
            if answers_inline(queries[0], len(vectors), req):
                version, changes, results = holder.use(run, version)
            else:
                version, changes, results = await run_in_threadpool(holder.use, run, version)
        finally:
            queries[0] -= 1
        seconds = time.perf_counter() - t0
        STAGE_SECONDS.labels(stage="query").observe(seconds)
        body = {"version": version, "changes": changes, "results": results, "timings_ms": {"query": seconds * 1e3}}
        return json_response(body)

    @router.get("/items/{item_id}")
    async def item(item_id: str, version: str | None = PINNED_VERSION) -> Response:
        """One catalog item's metadata and stored vector."""
        check_item_id(item_id)

        def run(reader: FreshView) -> dict[str, Any]:
            return {
                "version": reader.version,
                "item": reader.item(item_id).to_dict(),
                "vector": reader.vector_of(item_id),
            }

        return json_response(await run_in_threadpool(holder.use, run, version))

    _similar_route(router, settings, holder)
    _item_image_route(router, holder)
    return router


def _similar_route(router: APIRouter, settings: IndexSettings, holder: IndexHolder) -> None:
    @router.get("/items/{item_id}/similar")
    async def similar(
        item_id: str,
        k: int = Query(10, ge=1, description="Number of similar items."),
        category: str | None = Query(None, description="Only items of this category."),
        filter: str | None = Query(None, description=FILTER_TEXT),
        group: Group = GROUP_QUERY,
    ) -> Response:
        """Catalog items most like this one (the item itself, and with grouping its product, excluded)."""
        check_k(k, settings.max_k)
        check_item_id(item_id)
        check_category(category)
        options = options_of(filter, group)

        def run(reader: FreshView) -> dict[str, Any]:
            found = reader.item(item_id)
            reader.check_filter(options.where)
            own = product_key(found.item_id, found.attrs) if options.group else item_id
            hits = reader.query(reader.vector_of(item_id)[None, :], k + 1, category, options)[0]
            results = [h.to_dict() for h in hits if h.item_id != item_id and h.key(options.group) != own][:k]
            return {"version": reader.version, "item": found.to_dict(), "results": results}

        return json_response(await run_in_threadpool(holder.use, run))


def _item_image_route(router: APIRouter, holder: IndexHolder) -> None:
    @router.get("/items/{item_id}/image", response_class=Response)
    async def item_image(item_id: str, version: str | None = PINNED_VERSION) -> Response:
        """An item's thumbnail (at most 256 px), from the served index version's thumbs.bin."""
        check_item_id(item_id)
        data, media_type = await run_in_threadpool(holder.use, lambda reader: reader.thumbnail(item_id), version)
        return Response(data, media_type=media_type, headers=IMAGE_HEADERS)


def build_admin_router(settings: IndexSettings, holder: IndexHolder) -> APIRouter:
    """Admin routes (bearer token)."""
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin_guard(settings))])

    @router.post("/reload")
    async def reload(
        version: str | None = Query(None, description="Load this version (rollback); default: CURRENT."),
        force: bool = Query(False, description="Reload even if served, or refused before with this manifest."),
    ) -> Response:
        """Download, verify, load, self-test and atomically swap in the index; the old one keeps serving on error."""
        result = await holder.reload(version, force=force)
        return json_response(await fanout.announce(result, force))  # pre-forked workers: all of them

    return router


def create_app(settings: IndexSettings) -> FastAPI:
    """The index service app."""
    holder = IndexHolder(settings) if settings.partition is None else PartitionHolder(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(holder.poll_forever())
        changes = asyncio.create_task(holder.follow_changes())
        follower = fanout.start_following(holder)  # pre-forked workers: reloads ordered through another one
        yield
        task.cancel()
        changes.cancel()
        if follower is not None:
            follower.cancel()
        await asyncio.to_thread(holder.close)

    app = create_service_app(
        title="imgsearch index",
        description="Approximate nearest-neighbour search over the published catalog index (annoy).",
        readiness=holder.readiness,
        lifespan=lifespan,
        max_body_bytes=settings.uploads.max_bytes,
    )
    app.state.holder = holder
    app.include_router(build_router(settings, holder))
    app.include_router(build_admin_router(settings, holder))
    return app
