"""The index service's query: the request model, its checks, the search and each hit's fields, and when a query
is answered on the event loop."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from ann_index.serving.category_sets import CategorySpec, query_rows
from ann_index.serving.filters import parse_filter
from ann_index.serving.fresh_view import FreshView
from ann_index.serving.hits import Hit, QueryOptions
from ann_index.serving.prints import PrintCache
from imgcore.errors import InvalidInput, NotFound
from imgcore.fingerprint import prints_to_b64
from imgcore.index_wire import GROUP_PRODUCT, check_category
from services.common.wire import vectors_from_b64

FILTER_TEXT = 'Only items passing this filter, e.g. `brand IN ("Mori", "Kumo") AND price < 10000` (400 when malformed).'
GROUP_TEXT = "`product`: one hit per product, its best image (default); `none`: one hit per image."
Group = Literal["product", "none"]


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


def vectors_of(req: QueryRequest, max_vectors: int) -> np.ndarray:
    """The request's query vectors, [n, dim] float32; 400 when missing, ragged, not finite or too many."""
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


def categories_of(req: QueryRequest, rows: int) -> list[CategorySpec]:
    """One category spec per row (checked): `categories`, or `category` for every row."""
    categories: list[CategorySpec] = list(req.categories) if req.categories is not None else [req.category] * rows
    if len(categories) != rows:
        raise InvalidInput("categories must give one entry per vector", reason="bad_category")
    return [check_category(spec) for spec in categories]


def options_of(text: str | None, group: str) -> QueryOptions:
    """The parsed filter (400 naming the mistake, before anything is searched) and the grouping."""
    return QueryOptions(where=parse_filter(text), group=group == GROUP_PRODUCT)


def found_hits(
    reader: FreshView,
    vectors: np.ndarray,
    req: QueryRequest,
    categories: list[CategorySpec],
    options: QueryOptions,
    prints: PrintCache,
) -> list[list[Any]]:
    """Each row's hits as the wire's JSON objects, best first (`options`: `options_of` the request)."""
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


# A lone small query is answered on the event loop: handing it to a worker thread and back cost more than the
# annoy search itself (0.13 ms). Its round trip from a client: 1 row 1.51 -> 1.13 ms, 3 rows 2.27 -> 1.76 ms
# (one-off). With other queries in flight, or a filter to evaluate, the thread pool keeps the loop free and the
# cores shared (annoy releases the GIL while it searches).
INLINE_MAX_VECTORS = 4


def answers_inline(in_flight: int, vectors: int, req: QueryRequest) -> bool:
    """Whether a query runs on the event loop: the only one in flight, at most INLINE_MAX_VECTORS rows, no filter."""
    return in_flight == 1 and vectors <= INLINE_MAX_VECTORS and req.filter is None and not req.with_prints
