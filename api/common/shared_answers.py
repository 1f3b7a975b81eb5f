"""Anonymous answers shared for a moment: the same search asked by many people is computed once a second.

Most of a listing site's traffic is people who are not signed in asking the same few things: the
front page's searches, a locality's listings, suggestions for the first letters typed, the search
form's values. Each such search costs OpenSearch 5-10 ms of CPU and the service a few more, for an
answer that is the same for everyone and changes at most as often as the index is refreshed. So a
service names the routes whose anonymous answers anyone may share (`create_service(shared_answers=…)`),
and this pure-ASGI layer, inside the request log (each answer keeps its own correlation id, metrics
and log line) and outside everything else, keeps their 200 answers for `HI_SHARED_ANSWER_SECONDS`
(default 1 s; 0 turns it off), keyed by path and query string:

- only GET, only those paths, and only requests with none of `Authorization`, `X-User-Id`,
  `X-Consistency-Token`: a signed-in caller's search is recorded in their history and waits for their
  own writes, and a consistency token asks for a position a shared answer may not have reached; those
  go to the route every time, so read-your-writes holds exactly as before;
- only a whole 200 answer of at most `MAX_BODY_BYTES` is kept; errors (a 422, a 503 naming a store that
  is down) are never shared, so a store coming back is seen on the next request;
- while one request computes an answer, identical requests arriving meanwhile wait for it rather than
  asking OpenSearch the same thing (one computation per key at a time); if it ends in anything but a
  200 they each go to the route themselves.

What an anonymous reader gives up is at most `HI_SHARED_ANSWER_SECONDS` of freshness, the same order
as OpenSearch's own near-real-time refresh. At most `MAX_ENTRIES` answers per process; the oldest goes
first.
"""

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.common.fast_reads import FULL_RULES_HEADERS

MAX_ENTRIES = 4096
MAX_BODY_BYTES = 512 * 1024

Key = tuple[str, bytes]


@dataclass(frozen=True)
class _Answer:
    """A whole 200 answer: only those are kept."""

    headers: list[tuple[bytes, bytes]]
    body: bytes
    route: Any  # the matched route, so a shared answer is counted under the route's template
    expires: float


class SharedAnswers:
    def __init__(
        self,
        app: ASGIApp,
        paths: Collection[str],
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.seconds = seconds
        self.clock = clock
        self._answers: dict[Key, _Answer] = {}
        self._computing: dict[Key, asyncio.Future[_Answer | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._shareable(scope):
            await self.app(scope, receive, send)
            return
        key = (scope["path"], scope.get("query_string", b""))
        answer = self._answers.get(key)
        if answer is not None and answer.expires > self.clock():
            await self._replay(answer, scope, send)
            return
        computing = self._computing.get(key)
        if computing is not None:
            # shield: one waiter going away (its client hung up) must not cancel the others' answer.
            answer = await asyncio.shield(computing)
            if answer is not None:
                await self._replay(answer, scope, send)
            else:
                await self.app(scope, receive, send)
            return
        future: asyncio.Future[_Answer | None] = asyncio.get_running_loop().create_future()
        self._computing[key] = future
        answer = None
        try:
            answer = await self._compute(scope, receive, send)
        finally:
            del self._computing[key]
            future.set_result(answer)
        if answer is not None:
            self._keep(key, answer)

    def _shareable(self, scope: Scope) -> bool:
        return (
            self.seconds > 0
            and scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] in self.paths
            and not any(name in FULL_RULES_HEADERS for name, _ in scope["headers"])
        )

    async def _compute(self, scope: Scope, receive: Receive, send: Send) -> _Answer | None:
        """The route answers as always; a whole 200 answer is also kept."""
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0
        whole = False

        async def keeping(message: Message) -> None:
            nonlocal status, headers, size, whole
            if message["type"] == "http.response.start":
                status = message["status"]
                # Copied before sending: the request log adds this request's correlation id to the message.
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body" and status == 200:
                body = message.get("body", b"")
                size += len(body)
                if size <= MAX_BODY_BYTES:
                    chunks.append(body)
                whole = not message.get("more_body", False)
            await send(message)

        await self.app(scope, receive, keeping)
        if status != 200 or not whole or size > MAX_BODY_BYTES:
            return None
        return _Answer(
            headers=headers,
            body=b"".join(chunks),
            route=scope.get("route"),
            expires=self.clock() + self.seconds,
        )

    def _keep(self, key: Key, answer: _Answer) -> None:
        self._answers.pop(key, None)  # re-inserted last: the dict's order is the age order
        while len(self._answers) >= MAX_ENTRIES:
            del self._answers[next(iter(self._answers))]
        self._answers[key] = answer

    async def _replay(self, answer: _Answer, scope: Scope, send: Send) -> None:
        if answer.route is not None:
            scope["route"] = answer.route
        # Copies: the request log appends its correlation id to the header list it is given.
        await send({"type": "http.response.start", "status": 200, "headers": list(answer.headers)})
        await send({"type": "http.response.body", "body": answer.body})
