"""The one request guard of every service (pure ASGI, in front of FastAPI), for what must be refused
before a body is read whole or parsed:

- a route that needs a bearer token, sent a body but no `Authorization` header at all: 401 before one
  byte of the body is read (FastAPI reads and parses a body before it solves dependencies, so the
  token check of `current_user` comes too late for that; a token that is present but bad is still
  refused by `current_user`, after the capped body);
- a body larger than `HI_MAX_JSON_BODY_BYTES` (uploads excepted: they stream to storage under their own
  limits): 413, at once when `Content-Length` says so, else as soon as the streamed bytes pass the cap;
- what no store can hold, in a body FastAPI parses as JSON (`application/json`, `application/*+json`) or
  in the query: a NUL character (Postgres text refuses it), nesting deeper than `MAX_BODY_DEPTH`
  (our parsers and walkers stop at a few hundred levels): 422 naming the field. The codec refuses the
  same in every event before it is published (`schemas.codec.encode`); this is the cheap early answer.
"""

import email.message
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.params import Form
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.common.auth import Unauthorized
from api.common.deps import current_user, signed_in_query_context
from api.common.errors import error_response, field_error
from config.settings import get_settings
from schemas.codec import NUL_PROBLEM, document_problem

# Deeper than any body of ours (a listing or saved-search criteria nest 4 or 5); far below where
# orjson (1024), pydantic (~250) and Python's recursion (1000) give up.
MAX_BODY_DEPTH = 32


@dataclass(frozen=True)
class RouteRules:
    needs_token: bool
    upload: bool  # streams a multipart body under its own limits


NO_RULES = RouteRules(needs_token=False, upload=False)


def _depends_on_current_user(dependant: Dependant) -> bool:
    pending = list(dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if dependency.call is current_user or dependency.call is signed_in_query_context:
            return True
        pending.extend(dependency.dependencies)
    return False


def _takes_upload(route: APIRoute, dependant: Dependant) -> bool:
    # A form body (`File`, `Form`) or a body documented as multipart and read off the stream by the route.
    if any(isinstance(param.field_info, Form) for param in dependant.body_params):
        return True
    content = ((route.openapi_extra or {}).get("requestBody") or {}).get("content") or {}
    return "multipart/form-data" in content


def _rules(context: RouteContext) -> RouteRules:
    route = context.original_route
    if not isinstance(route, APIRoute):
        return NO_RULES
    # The dependant as included (with its router's dependencies), not only the endpoint's own.
    dependant: Dependant = getattr(context, "dependant", route.dependant)
    return RouteRules(needs_token=_depends_on_current_user(dependant), upload=_takes_upload(route, dependant))


def _parsed_as_json(content_type: str) -> bool:
    """FastAPI's own test (fastapi/routing.py): which bodies it hands to `json.loads`."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _query_nul(query: bytes) -> str | None:
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "")
    return None


def _body_problem(body: bytes) -> tuple[str, str] | None:
    # Cheap byte tests first: a body with no \u0000 and fewer brackets than the depth cap is not decoded here.
    if b"\\u0000" not in body and body.count(b"{") + body.count(b"[") <= MAX_BODY_DEPTH:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's own limit (1024 levels), far past ours
            return "body", f"must not nest deeper than {MAX_BODY_DEPTH} levels"
        return None  # malformed JSON: FastAPI answers 400 for it
    return document_problem(document, MAX_BODY_DEPTH)


class RequestGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: list[tuple[RouteContext, RouteRules]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = _query_nul(scope.get("query_string", b""))
        if name is not None:
            await _refuse(scope, receive, send, 422, name, NUL_PROBLEM)
            return
        headers = {key: value for key, value in scope["headers"] if key in _HEADERS}
        length = headers.get(b"content-length")
        if length in (None, b"0") and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body: nothing to read or refuse
            return
        rules = self._route_rules(scope)
        if rules.needs_token and b"authorization" not in headers:
            refusal = Unauthorized("Missing access token")
            await error_response(refusal.status, refusal.message, refusal.errors, refusal.headers)(scope, receive, send)
            return
        if rules.upload:
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        if length is not None and length.isdigit() and int(length) > limit:
            await _refuse(scope, receive, send, 413, "body", f"must be at most {limit} bytes")
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:  # a chunked body, or one longer than its Content-Length said: cut off here
                await _refuse(scope, receive, send, 413, "body", f"must be at most {limit} bytes")
                return
            if not message.get("more_body", False):
                break
        if _parsed_as_json(headers.get(b"content-type", b"").decode("latin-1")):
            problem = _body_problem(b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request"))
            if problem is not None:
                await _refuse(scope, receive, send, 422, *problem)
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    def _route_rules(self, scope: Scope) -> RouteRules:
        """The rules of the route that will answer; a path no route takes gets the strictest body rules."""
        if self._routes is None:  # the routes are all declared by the first request
            app: FastAPI = scope["app"]
            self._routes = [(context, _rules(context)) for context in iter_route_contexts(app.router.routes)]
        for context, rules in self._routes:
            if context.matches(scope)[0] is Match.FULL:
                return rules
        return NO_RULES

    @staticmethod
    def _limit(scope: Scope) -> int:
        settings = getattr(scope["app"].state, "settings", None) or get_settings()
        return int(settings.max_json_body_bytes)


_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"content-type", b"authorization"})


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, field: str, problem: str) -> None:
    message = "Request body too large" if status == 413 else f"Invalid request: check {field}"
    await error_response(status, message, [field_error(field, problem)])(scope, receive, send)
