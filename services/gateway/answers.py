"""What a backend's answer must look like before the gateway reads it: JSON objects of the expected shape.

A backend (a partition, a shadow candidate) that answers valid JSON of the wrong shape is that backend's
failure, like one that does not answer: a partitioned answer leaves it out (`partial`), a readiness check
counts it not ready. Only what the gateway reads is checked: the rows of a query and their hits' ids and
scores, the parts of a /readyz it learns from.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from services.common.errors import BackendUnavailable
from services.common.metrics import BACKEND_ERRORS

log = logging.getLogger("imgsearch.gateway")


class MalformedAnswer(BackendUnavailable):
    """A backend answered 2xx with a body the gateway cannot use."""


def malformed(backend: str, why: str) -> MalformedAnswer:
    """The error (counted, kind `malformed`) for a backend's unusable answer."""
    BACKEND_ERRORS.labels(backend=backend, kind="malformed").inc()
    log.warning("%s answered a malformed body: %s", backend, why)
    return MalformedAnswer(f"{backend} answered a malformed body: {why}")


def json_object(backend: str, content: bytes) -> dict[str, Any]:
    """The answer as a JSON object; MalformedAnswer for anything else."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise malformed(backend, "not JSON") from None
    if not isinstance(body, dict):
        raise malformed(backend, f"a JSON {type(body).__name__}, not an object")
    return body


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hit_problem(hit: object) -> str | None:
    if not isinstance(hit, dict):
        return "a hit is not an object"
    if not isinstance(hit.get("item_id"), str):
        return "a hit's item_id is not a string"
    if not _is_number(hit.get("score")):
        return "a hit's score is not a number"
    return None


def query_answer(backend: str, body: dict[str, Any], rows: int) -> dict[str, Any]:
    """`body` when it holds `rows` lists of hits (each with a string item_id and a numeric score)."""
    results = body.get("results")
    if not isinstance(results, list) or len(results) != rows:
        raise malformed(backend, f"results are not {rows} rows")
    if not isinstance(body.get("version"), str | None) or not _is_number(body.get("changes") or 0):
        raise malformed(backend, "version or changes of the wrong type")
    for row in results:
        if not isinstance(row, list):
            raise malformed(backend, "a row of results is not a list")
        for hit in row:
            if (problem := _hit_problem(hit)) is not None:
                raise malformed(backend, problem)
    return body


_READY_TYPES: dict[str, type | tuple[type, ...]] = {
    "index": dict,
    "model": dict,
    "versions": list,
}
_INDEX_TYPES: dict[str, type | tuple[type, ...]] = {
    "version": (str, type(None)),
    "categories": (list, dict),
    "kinds": (dict, type(None)),
    "embedder": (dict, type(None)),
    "changes": (dict, type(None)),
}


def readiness_problem(body: object) -> str | None:
    """Why a /readyz body cannot be learnt from (None: it can)."""
    if not isinstance(body, dict):
        return f"a JSON {type(body).__name__}, not an object"
    for key, kinds in _READY_TYPES.items():
        if key in body and not isinstance(body[key], kinds):
            return f"{key} is a {type(body[key]).__name__}"
    if not all(isinstance(v, str) for v in body.get("versions", [])):
        return "versions are not strings"
    index = body.get("index", {})
    for key, kinds in _INDEX_TYPES.items():
        if key in index and not isinstance(index[key], kinds):
            return f"index.{key} is a {type(index[key]).__name__}"
    changes = index.get("changes") or {}
    if "seq" in changes and not isinstance(changes["seq"], int):
        return "index.changes.seq is not an integer"
    for model in (index.get("embedder") or {}, body.get("model", {})):
        if not isinstance(model.get("sha256", ""), str | None):
            return "a model's sha256 is not a string"
    return None
