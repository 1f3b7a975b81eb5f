"""The one error envelope and the one set of exception handlers every service installs.

`{"success": false, "message": "...", "errors": [{"field": "price", "message": "..."}]}`: a client
reads `message`, a form highlights each `field`. Nothing about our internals reaches a body: an
unexpected exception answers a generic 500 and its trace goes to the log only.
"""

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from psycopg_pool import PoolTimeout
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("api.errors")

FieldError = dict[str, str]


def field_error(field: str, message: str) -> FieldError:
    return {"field": field, "message": message}


class ApiError(Exception):
    """Raised by routes and dependencies for any answer that is not a success."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: Iterable[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors)
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"success": False, "message": self.message, "errors": self.errors}


class DependencyUnavailable(ApiError):
    """A store or Kafka cannot be reached: 503, naming it, so the client knows to retry later."""

    def __init__(self, dependency: str, detail: str | None = None) -> None:
        message = f"{dependency} is unavailable"
        super().__init__(503, message, [field_error(dependency, detail or message)])
        self.dependency = dependency


# Client errors that mean "that store is down", not "bug": a route meeting one answers 503 naming it.
DOWN_ERRORS: dict[type[Exception], str] = {
    PoolTimeout: "postgres",
    psycopg.OperationalError: "postgres",
    redis.exceptions.ConnectionError: "redis",
    redis.exceptions.TimeoutError: "redis",
    OpenSearchConnectionError: "opensearch",
}


def error_response(
    status: int,
    message: str,
    errors: Iterable[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        ApiError(status, message, errors).body(), status_code=status, headers=dict(headers) if headers else None
    )


def field_path(loc: Sequence[str | int]) -> str:
    """`("body", "address", "zip_code")` -> `address.zipCode`; `("body", "items", 0, "price")` -> `items[0].price`.

    The request part (`body`, `query`, `path`) is dropped; header names are kept as sent
    (`X-Session-Id`), since a client looks for them by that name.
    """
    where, *parts = loc or ("body",)
    if where == "header":
        return ".".join(str(p) for p in parts)
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + to_camel(part)
    return path or str(where)


def _clean_message(message: str) -> str:
    # pydantic prefixes the text of a ValueError raised in a validator; the client needs only the text.
    return message.removeprefix("Value error, ")


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = exc.errors()
    broken_json = next((p for p in problems if p.get("type") == "json_invalid"), None)
    if broken_json is not None:
        reason = (broken_json.get("ctx") or {}).get("error", "malformed JSON")
        return error_response(400, "Request body is not valid JSON", [field_error("body", str(reason))])
    errors = [field_error(field_path(p["loc"]), _clean_message(p["msg"])) for p in problems]
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return error_response(422, f"Invalid request: check {fields}", errors)


async def _on_http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if isinstance(exc.detail, str):
        message, errors = exc.detail, []
    else:
        # A dict or list detail (FastAPI allows both) travels as a single error entry, never as `message`.
        message, errors = "Request failed", [field_error("detail", str(jsonable_encoder(exc.detail)))]
    return error_response(exc.status_code, message, errors, exc.headers)


async def _on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    if exc.status >= 500:
        logger.warning("%s %s answered %s: %s", request.method, request.url.path, exc.status, exc.message)
    return error_response(exc.status, exc.message, exc.errors, exc.headers)


async def _on_dependency_down(request: Request, exc: Exception) -> JSONResponse:
    dependency = next(name for cls, name in DOWN_ERRORS.items() if isinstance(exc, cls))
    logger.warning("%s %s: %s is down: %r", request.method, request.url.path, dependency, exc)
    down = DependencyUnavailable(dependency)
    return error_response(down.status, down.message, down.errors)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"correlation_id": getattr(request.state, "correlation_id", None)},
    )
    return error_response(500, "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    handlers: dict[Any, Any] = {
        RequestValidationError: _on_validation_error,
        StarletteHTTPException: _on_http_exception,
        ApiError: _on_api_error,
        **dict.fromkeys(DOWN_ERRORS, _on_dependency_down),
        Exception: _on_unexpected,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)
