"""The success envelope `{"success": true, "message": "...", "data": ...}` and the camelCase base model."""

from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import orjson
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel

from schemas.envelope import format_time

T = TypeVar("T")


class ApiModel(BaseModel):
    """Request and response bodies: snake_case in Python, camelCase on the wire.

    `validate_by_name` + `validate_by_alias` is pydantic 2.11's spelling of `populate_by_name`.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


# Python's dates end at the years 1 and 9999: a time within a day of either end overflows when it is moved
# to UTC or to a local day, so what a client sends must stay inside these.
EARLIEST_DAY = date(1, 1, 2)
LATEST_DAY = date(9999, 12, 30)
OUT_OF_RANGE = f"must be between {EARLIEST_DAY.isoformat()} and {LATEST_DAY.isoformat()}"


def require_utc(value: datetime) -> datetime:
    """A client's time, in UTC; ValueError (the client's mistake, 422) if it has no zone or is out of range."""
    if value.tzinfo is None:
        raise ValueError("time must carry a time zone, e.g. 2024-01-15T10:30:00Z")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None
    require_day(utc.date())
    return utc


def require_day(value: date) -> date:
    if not EARLIEST_DAY <= value <= LATEST_DAY:
        raise ValueError(OUT_OF_RANGE)
    return value


# The one time format on the wire: ISO-8601 UTC with `Z` (`2024-01-15T10:30:00.000Z`).
Timestamp = Annotated[
    datetime, AfterValidator(require_utc), PlainSerializer(format_time, return_type=str, when_used="json")
]


class Success(ApiModel, Generic[T]):
    """For `response_model=Success[PropertyOut]`, so OpenAPI documents the envelope a route returns."""

    success: Literal[True] = True
    message: str
    data: T


class OrjsonResponse(JSONResponse):
    """JSON by orjson: several times cheaper than the standard library on every answer we send.
    Times are written our way (UTC with `Z`); anything orjson does not know goes through FastAPI's
    encoder (pydantic models, enums of other kinds)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_fallback, option=orjson.OPT_PASSTHROUGH_DATETIME)


def _fallback(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    return jsonable_encoder(value)


def _envelope(data: Any, message: str) -> dict[str, Any]:
    return {"success": True, "message": message, "data": data}


def ok(data: Any = None, message: str = "OK", headers: dict[str, str] | None = None) -> JSONResponse:
    return OrjsonResponse(_envelope(data, message), headers=headers)


def created(data: Any, message: str, location: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return OrjsonResponse(_envelope(data, message), status_code=201, headers={**(headers or {}), "Location": location})
