"""Structured logs: one JSON object per line, and one line per request that changed or refused something.

The request line carries method, path, status, duration and correlation id; never headers, query
strings or bodies, which is where tokens and personal data travel. Every write, every refusal or
failure (status 400 and up) and every read slower than `SLOW_READ_SECONDS` is logged at INFO; a read
(GET, HEAD) answered quickly and well is logged at DEBUG only: it is most of the traffic, a log line
costs more CPU than the rest of its answer, and `/metrics` counts it by route, status and duration.
"""

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.envelope import format_time
from schemas.ids import new_id

request_logger = logging.getLogger("api.request")

CORRELATION_HEADER = "x-correlation-id"
# A client's correlation id is echoed and logged, so only a short, plain one is taken as given.
CORRELATION_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Standard LogRecord attributes, and uvicorn's ANSI-coloured copy of its message: not worth a JSON key.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message", "taskName"}
# Client libraries that log every request (opensearch-py: every failed one with a trace); what they
# report is ours to report, as a 503 naming the dependency.
_CHATTY_LOGGERS = {"opensearch": logging.ERROR, "httpx": logging.WARNING, "aiokafka": logging.WARNING}


# A read this slow is logged at INFO although it succeeded: the one an operator looks for by correlation id.
SLOW_READ_SECONDS = 0.5
_READS = frozenset({"GET", "HEAD"})


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": format_time(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Fields passed with `extra={...}` ride along as top-level keys.
        entry.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _DropUvicornTrace(logging.Filter):
    # Our 500 handler already logged the trace with the request's path and correlation id.
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage().strip() != "Exception in ASGI application"


_DROP_UVICORN_TRACE = _DropUvicornTrace()  # one instance, so repeated configuration adds it once


def configure_logging(service: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    # Replace only a JSON handler of ours (idempotent across restarts); keep others, e.g. pytest's.
    kept = [h for h in root.handlers if not isinstance(h.formatter, JsonFormatter)]
    root.handlers = [*kept, handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    logging.getLogger("uvicorn.error").addFilter(_DROP_UVICORN_TRACE)
    for name, chatty_level in _CHATTY_LOGGERS.items():
        logging.getLogger(name).setLevel(chatty_level)
    # Our request line replaces uvicorn's access log, which would print query strings.
    logging.getLogger("uvicorn.access").disabled = True


class RequestLogMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware) so streaming responses and background tasks stay intact.
    `observe(scope, status, seconds)`, when given, is told of every answered request (the metrics)."""

    def __init__(self, app: ASGIApp, observe: Callable[[Scope, int, float], None] | None = None) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(CORRELATION_HEADER.encode(), b"").decode("latin-1")
        correlation_id = given if CORRELATION_PATTERN.match(given) else new_id("corr")
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A copy: the response object may reuse its header list.
                message["headers"] = [*message.get("headers", []), (b"x-correlation-id", correlation_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if self.observe is not None:
                self.observe(scope, status, seconds)
            quiet = status < 400 and seconds < SLOW_READ_SECONDS and scope["method"] in _READS
            level = logging.DEBUG if quiet else logging.INFO
            if request_logger.isEnabledFor(level):
                _log_request(level, scope, status, seconds, correlation_id)


def _log_request(level: int, scope: Scope, status: int, seconds: float, correlation_id: str) -> None:
    request_logger.log(
        level,
        "%s %s %s",
        scope["method"],
        scope["path"],
        status,
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "correlation_id": correlation_id,
        },
    )
