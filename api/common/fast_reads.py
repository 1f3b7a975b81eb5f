"""Plain anonymous reads answered before FastAPI's router: the hottest GETs of the mix, at a fraction of
the CPU.

Most reads are a browser asking for a listing by id: no token, no consistency token, no query. For
such a request FastAPI's routing (every route tried in turn), its dependency solving and its exception
and exit-stack layers cost several times the read itself. A service names those reads (`FastRead`:
the route's template, the path parameter's own pattern, and `answer`), and this pure-ASGI layer,
inside the request log (correlation id, metrics by template, the log line) and outside the guard,
answers them itself when the request is plain:

- method GET, path matching the template with the parameter's pattern (anything else, even a path
  FastAPI would refuse, goes on to FastAPI, which answers it as always);
- no query string and none of `Authorization`, `X-User-Id`, `X-Consistency-Token`: so there is no
  caller, nothing to wait for and no own writes to read, and nothing to validate or refuse;
- `answer` returns the response, or None for anything but the common case (not in the cache, deleted),
  which FastAPI's route then answers with its full rules. A store error on the way is not answered
  here either: the route meets it again and answers 503 naming the store, as every route does (any
  other failure is logged, and the route answers too).

So the answers are the route's own: `answer` builds them with the same functions as the route, and
tests/integration/test_property_endpoints.py compares the two.
"""

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from starlette.datastructures import State
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.common.errors import DOWN_ERRORS

logger = logging.getLogger("api.fast_reads")

# Any of these makes the request one for the route's full rules (a caller, a wait, own writes).
FULL_RULES_HEADERS = frozenset({b"authorization", b"x-user-id", b"x-consistency-token"})
_DOWN = tuple(DOWN_ERRORS)


@dataclass(frozen=True)
class FastRead:
    """`path` is the route's template as FastAPI and the metrics name it (`/api/properties/{property_id}`),
    with exactly one parameter; `parameter` its pattern, anchored (`^prop-[A-Za-z0-9]{1,64}$`)."""

    path: str
    parameter: str
    answer: Callable[[State, str], Awaitable[Response | None]]
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        head, brace, rest = self.path.partition("{")
        name, _, tail = rest.partition("}")
        if not brace or not name or "{" in tail:
            raise ValueError(f"a fast read takes one path parameter: {self.path!r}")
        inner = self.parameter.removeprefix("^").removesuffix("$")
        # Frozen, and derived: set once here.
        object.__setattr__(self, "regex", re.compile(f"{re.escape(head)}({inner}){re.escape(tail)}"))

    def match(self, path: str) -> str | None:
        found = self.regex.fullmatch(path)
        return found.group(1) if found else None


class FastReads:
    def __init__(self, app: ASGIApp, reads: Sequence[FastRead]) -> None:
        self.app = app
        self.reads = tuple(reads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("query_string"):
            response = await self._answer(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope) -> Response | None:
        path = scope["path"]
        for read in self.reads:
            value = read.match(path)
            if value is None:
                continue
            if any(key in FULL_RULES_HEADERS for key, _ in scope["headers"]):
                return None
            try:
                response = await read.answer(scope["app"].state, value)
            except _DOWN:
                return None  # the route answers it: 503 naming the store
            except Exception:
                # Never an answer the route would not give: it answers this one, with its own errors.
                logger.exception("the fast read of %s failed; the route answers it", read.path)
                return None
            if response is not None:
                scope["route"] = read  # what the metrics count it under: its template
            return response
        return None
