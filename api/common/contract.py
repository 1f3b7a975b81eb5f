"""What each operation's OpenAPI promises besides its success: its error statuses, each with the one
error envelope as schema, and the headers it sets.

A route names the errors that are its own (`responses=errors(403, 404, 409)`); `publish_contract`
adds, to every operation of a service, the errors every operation can meet: 422 (and 400 for a body
that is not JSON) where it takes input, 401 where it reads a token, 413 where it takes a body, 503
when a store or Kafka is down. A generated client then knows the shape of every answer it can get.
"""

from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from api.common.idempotency import IDEMPOTENCY_HEADER
from api.common.kafka import CONSISTENCY_HEADER


class FieldErrorOut(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """The one error envelope: a client reads `message`, a form highlights each `errors[].field`."""

    success: Literal[False]
    message: str
    errors: list[FieldErrorOut]


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (a body that is not JSON, a cursor this API did not issue)",
    401: "Missing, malformed, expired or revoked access token",
    403: "Signed in, but not allowed to do this",
    404: "No such resource (or not visible to this caller)",
    409: "Conflicts with the current state (a duplicate, an Idempotency-Key reused or in progress)",
    412: "If-Match names a version that is no longer current",
    413: "The body is larger than this operation accepts",
    415: "A media type this operation does not accept",
    416: "The Range asked for lies outside the file",
    422: "Invalid input; `errors` names each field and what is wrong with it",
    428: "If-Match is required for this operation",
    429: "Too many requests; `Retry-After` says when to try again",
    503: "A store or Kafka is unavailable, or the decision did not arrive in time; retry later",
}

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "string"}}}
# Set on every answer to a command: the Kafka positions of the events it produced.
CONSISTENCY_TOKEN = {
    CONSISTENCY_HEADER: {
        "description": "Kafka positions of the events this command produced; send it on a query to read them",
        "schema": {"type": "string"},
    }
}
LOCATION = {"Location": {"description": "Where the created resource can be read", "schema": {"type": "string"}}}
ETAG = {"ETag": {"description": "The resource's version, for If-Match", "schema": {"type": "string"}}}
# Set on a query's answer when the store had not applied the positions it waited for within the bound.
STALE = {
    "X-Consistency": {
        "description": "`stale` when the store had not caught up with the positions waited for in time",
        "schema": {"type": "string", "enum": ["stale"]},
    }
}
IDEMPOTENCY_DESCRIPTION = (
    f"`{IDEMPOTENCY_HEADER}`: the same key with the same body answers the first answer again, "
    "without a second command; with another body, 409"
)

_ERROR_SCHEMA_REF = {"$ref": "#/components/schemas/ErrorOut"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with its description and the error envelope."""
    return {status: _error_response(status) for status in statuses}


def success_headers(*headers: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for header in headers:
        merged.update(header)
    return merged


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[status]}
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


def _openapi_error(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": _ERROR_SCHEMA_REF}},
    }
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


# Headers whose mere presence can be refused: an `X-User-Id` that is not the token's subject (403),
# an `Idempotency-Key` whose first request is still being answered (409).
_HEADER_ERRORS = {"x-user-id": 403, IDEMPOTENCY_HEADER.lower(): 409}


def _common_errors(path: str, operation: dict[str, Any]) -> list[int]:
    statuses = []
    parameters = operation.get("parameters") or []
    takes_input = bool(parameters or operation.get("requestBody"))
    if takes_input:
        statuses += [400, 422]
    if operation.get("security"):
        statuses.append(401)
    headers = {str(p.get("name", "")).lower() for p in parameters if p.get("in") == "header"}
    statuses += [status for header, status in _HEADER_ERRORS.items() if header in headers]
    if operation.get("requestBody"):
        statuses.append(413)
    if path.startswith("/api/") or path in ("/ready", "/status"):
        statuses.append(503)
    return statuses


def publish_contract(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`: FastAPI's spec, with the common errors added to every operation, in the envelope."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
        )
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ErrorOut", ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}"))
        schemas.setdefault("FieldErrorOut", FieldErrorOut.model_json_schema())
        schemas["ErrorOut"].pop("$defs", None)
        for path, operations in spec.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status in _common_errors(path, operation):
                    # Ours replaces FastAPI's default 422 (its HTTPValidationError is not what we answer).
                    if str(status) not in responses or status == 422:
                        responses[str(status)] = _openapi_error(status)
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = spec
        return spec

    return openapi
