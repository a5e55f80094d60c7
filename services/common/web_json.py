"""Fast JSON responses (orjson, numpy arrays serialised natively)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from imgcore.index_wire import wire_json


def dumps(content: Any) -> bytes:
    """Serialise to JSON bytes the way every service answers (what `items apply` checks rows with)."""
    return wire_json(content)


class ORJSONResponse(Response):
    """A JSON response rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def json_response(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response with the given status."""
    return ORJSONResponse(content, status_code=status, headers=headers)
