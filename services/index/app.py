"""The index service: nearest catalog items for query vectors, item look-up, and index hot-swap."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ann_index.serving.category_sets import CategorySpec, query_rows
from ann_index.serving.filters import parse_filter
from ann_index.serving.fresh_view import FreshView
from ann_index.serving.hits import Hit, QueryOptions
from ann_index.serving.prints import PrintCache
from imgcore.errors import InvalidInput, NotFound
from imgcore.fingerprint import prints_to_b64
from imgcore.index_wire import GROUP_PRODUCT, check_category, check_item_id, product_key
from imgcore.retrieval import check_k
from services.common.admin import admin_guard
from services.common.metrics import STAGE_SECONDS
from services.common.settings import IndexSettings
from services.common.web import create_service_app
from services.common.web_json import json_response
from services.common.wire import vectors_from_b64
from services.index import fanout
from services.index.holder import IndexHolder
from services.index.partition_holder import PartitionHolder

# Thumbnails are public catalog content; nosniff keeps a browser from reading them as anything but an image.
IMAGE_HEADERS = {"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"}


# A partitioned gateway pins every call of one answer to one version (issue 16): 409 when it is not held here.
PINNED_VERSION = Query(None, description="Answer from this index version only (409 when it is not held).")
FILTER_TEXT = 'Only items passing this filter, e.g. `brand IN ("Mori", "Kumo") AND price < 10000` (400 when malformed).'
GROUP_TEXT = "`product`: one hit per product, its best image (default); `none`: one hit per image."
Group = Literal["product", "none"]
GROUP_QUERY = Query(GROUP_PRODUCT, description=GROUP_TEXT)


class QueryRequest(BaseModel):
    """Query vectors as JSON lists (`vectors`) or base64 little-endian float32 rows (`vectors_b64` + `dim`)."""

    vectors: list[list[float]] | None = Field(None, description="Query vectors, one list of floats per row.")
    vectors_b64: str | None = Field(None, description="Base64 of float32 rows (internal fast path).")
    dim: int | None = Field(None, ge=1, description="Row length of vectors_b64.")
    k: int = Field(10, ge=1, description="Results per query vector.")
    category: str | list[str] | None = Field(
        None, description="Search only this catalog category, or any of a list of them (all rows)."
    )
    categories: list[str | list[str] | None] | None = Field(
        None, description="Per row: a category, a list of categories (any of them) or null (all)."
    )
    filter: str | None = Field(None, description=FILTER_TEXT)
    group: Group = Field("product", description=GROUP_TEXT)
    with_vectors: bool = Field(False, description="Each hit carries its stored vector.")
    with_prints: bool = Field(
        False, description="Each hit carries its picture's fingerprint, `print` (the gateway's dedupe)."
    )


def _vectors(req: QueryRequest, max_vectors: int) -> np.ndarray:
    if req.vectors_b64 is not None:
        vectors = vectors_from_b64(req.vectors_b64, req.dim or 0)
    elif req.vectors is not None:
        try:
            vectors = np.asarray(req.vectors, dtype=np.float32)
        except ValueError as exc:
            raise InvalidInput("vectors must be rows of equal length", reason="bad_vectors") from exc
    else:
        raise InvalidInput("give vectors or vectors_b64", reason="bad_vectors")
    if vectors.ndim != 2 or len(vectors) == 0 or not np.isfinite(vectors).all():
        raise InvalidInput("vectors must be a non-empty [n, dim] array of finite numbers", reason="bad_vectors")
    if len(vectors) > max_vectors:
        raise InvalidInput(f"at most {max_vectors} vectors per query", reason="bad_vectors")
    return vectors


def _categories(req: QueryRequest, rows: int) -> list[CategorySpec]:
    categories: list[CategorySpec] = list(req.categories) if req.categories is not None else [req.category] * rows
    if len(categories) != rows:
        raise InvalidInput("categories must give one entry per vector", reason="bad_category")
    return [check_category(spec) for spec in categories]


def _options(text: str | None, group: str) -> QueryOptions:
    """The parsed filter (400 naming the mistake, before anything is searched) and the grouping."""
    return QueryOptions(where=parse_filter(text), group=group == GROUP_PRODUCT)


def _query(
    reader: FreshView, vectors: np.ndarray, req: QueryRequest, categories: list[CategorySpec], prints: PrintCache
) -> list[list[Any]]:
    options = _options(req.filter, req.group)
    reader.check_filter(options.where)
    found = query_rows(reader, vectors, req.k, categories, options)
    return [[_hit(reader, h, req, prints) for h in hits] for hits in found]


def _hit(reader: FreshView, hit: Hit, req: QueryRequest, prints: PrintCache) -> dict[str, Any]:
    out = hit.to_dict()
    if req.with_vectors:
        out["vector"] = reader.vector_of(hit.item_id).tolist()
    if req.with_prints:
        try:
            found = prints.of(reader.thumbnail(hit.item_id)[0])
        except NotFound:  # a version or fresh item without thumbnails: nothing to compare, never collapsed
            found = None
        if found is not None:
            out["print"] = prints_to_b64(found)
    return out


def build_router(settings: IndexSettings, holder: IndexHolder) -> APIRouter:
    """Public routes of the index service."""
    router = APIRouter(prefix="/v1", tags=["index"])
    prints = PrintCache()

    @router.post("/query")
    async def query(req: QueryRequest, version: str | None = PINNED_VERSION) -> Response:
        """Top-k catalog items per query vector, best first (cosine score), optionally within a category."""
        check_k(req.k, settings.max_k)
        vectors = _vectors(req, settings.max_vectors)
        categories = _categories(req, len(vectors))
        _options(req.filter, req.group)  # a malformed filter is a 400 before any index is used
        t0 = time.perf_counter()

        def run(reader: FreshView) -> tuple[str, int, list[list[Any]]]:
            return reader.version, reader.changes, _query(reader, vectors, req, categories, prints)

        version, changes, results = await run_in_threadpool(holder.use, run, version)
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
        options = _options(filter, group)

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
