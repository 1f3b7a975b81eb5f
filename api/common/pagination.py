"""Cursor pagination: `?limit=` (1..100, default 20) and an opaque `?cursor=`.

A cursor is the position after the last item served (e.g. `{"createdAt": ..., "id": ...}`), as
urlsafe base64 of JSON. It is opaque, not secret: a query must still check what it decodes, since a
client can hand back anything.
"""

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Depends, Query

from api.common.errors import ApiError, field_error
from api.common.responses import ApiModel

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 1024


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = orjson.loads(raw)
    except (binascii.Error, ValueError):
        position = None
    if not isinstance(position, dict) or not position:
        raise ApiError(
            400,
            "Invalid cursor",
            [field_error("cursor", "not a cursor this API issued; use nextCursor from the previous page")],
        )
    return position


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: dict[str, Any] | None  # decoded; None for the first page


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=MAX_CURSOR_LENGTH, description="`nextCursor` of the previous page")
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=decode_cursor(cursor) if cursor else None)


PageQuery = Annotated[PageParams, Depends(page_params)]


class Page(ApiModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def page(items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "nextCursor": next_cursor}
