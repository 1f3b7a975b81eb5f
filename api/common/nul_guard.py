"""Postgres text cannot hold a NUL character (\\u0000). One in a request would be accepted into Kafka
and then refused by every projection: a listing answered 201 that never appears. Every service refuses
it at the door instead: 422 naming the field (JSON bodies) or the query parameter."""

from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.common.errors import error_response, field_error
from schemas.codec import nul_path

PROBLEM = "must not contain a NUL character (\\u0000)"


def _query_nul(query: bytes) -> str | None:
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "")
    return None


class RefuseNul:
    """Pure ASGI middleware: only JSON bodies are buffered (uploads stream on untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = _query_nul(scope.get("query_string", b""))
        if name is not None:
            await _refuse(scope, receive, send, name)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if not content_type.lower().startswith(b"application/json"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        # Cheap byte test first: only a body whose JSON mentions \u0000 is decoded and walked.
        if b"\\u0000" in body:
            try:
                field = nul_path(orjson.loads(body))
            except orjson.JSONDecodeError:
                field = None  # malformed JSON: FastAPI answers 400 for it
            if field is not None:
                await _refuse(scope, receive, send, field)
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, field: str) -> None:
    response = error_response(422, f"Invalid request: check {field}", [field_error(field, PROBLEM)])
    await response(scope, receive, send)
