"""Read-your-writes without a token: the services remember, briefly, where each writer's events landed.

A client that copies `X-Consistency-Token` from a command's answer onto its next query reads its own
write; a browser, a mobile app or curl does not copy it. So every answer that carries the token also
records its positions in Redis for whoever wrote: the signed-in user (`user:<id>`), or, for a
registration, the email's key (`email:<key>`, the HMAC the registry uses), which login reads before
it looks the address up. Every query by a signed-in user then waits for that user's positions as if
the token had been sent; the token still works on its own (another device, an anonymous client).

One hash per writer, `own-writes:<writer>`, field `topic:partition`, value the highest offset: a Lua
script merges each answer's positions (max per partition, atomically: two services answering one
user's commands at once may record in either order). The hash lives for the wait bound plus a margin,
refreshed by each write: a store that has not applied a position by then makes the query answer
`X-Consistency: stale` anyway, so keeping it longer would only make every later query wait too.
A query reads the hash in the round trip of the deny-list check (`api/common/revocation.py`).
"""

import logging
import math
import weakref
from collections.abc import Iterable, Mapping

from fastapi import Request
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.common.kafka import CONSISTENCY_HEADER, Position, consistency_token, parse_consistency_token

logger = logging.getLogger("api.own_writes")

# Every service's OpenAPI description ends with it.
OPENAPI_RULE = (
    "**Reading your own writes.** Command answers carry `X-Consistency-Token`, the Kafka positions of the "
    "events they produced. A signed-in caller's queries, on every service, wait (up to "
    "`HI_CONSISTENCY_WAIT_SECONDS`, 2 s) until the store they read has applied that caller's own latest "
    "writes, with no header: create then read, update then read, delete then 404, all at once. Another "
    "device or an anonymous client sends the command's `X-Consistency-Token` on its query for the same "
    "wait. A query that gave up waiting answers what the store has, with `X-Consistency: stale`."
)
# The request-state entry naming who the answer's positions belong to (set once the caller is known).
WRITER_STATE = "own_writer"
# Beyond the wait bound: a query that starts just before the hash would expire still finds it.
MARGIN_SECONDS = 5.0

_MERGE = """
for i = 2, #ARGV, 2 do
  local known = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > known then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
# One registered script per client: EVALSHA sends the 40-character digest instead of the script's text,
# and Redis runs its cached compile (redis-py loads the script again if Redis answers NOSCRIPT).
_merge_scripts: "weakref.WeakKeyDictionary[Redis, AsyncScript]" = weakref.WeakKeyDictionary()


def user_writer(user_id: str) -> str:
    return f"user:{user_id}"


def email_writer(email_key: str) -> str:
    return f"email:{email_key}"


def writes_key(writer: str) -> str:
    return f"own-writes:{writer}"


def life_ms(wait_seconds: float) -> int:
    return math.ceil((wait_seconds + MARGIN_SECONDS) * 1000)


def attribute_to(request: Request, writer: str) -> None:
    """The positions this request's answer carries are `writer`'s own writes."""
    setattr(request.state, WRITER_STATE, writer)


async def remember(redis: Redis, writer: str, positions: Iterable[Position], wait_seconds: float) -> None:
    args: list[str | int] = [life_ms(wait_seconds)]
    for p in positions:
        args += [f"{p.topic}:{p.partition}", p.offset]
    if len(args) > 1:
        merge = _merge_scripts.get(redis)
        if merge is None:
            merge = _merge_scripts[redis] = redis.register_script(_MERGE)
        await merge(keys=[writes_key(writer)], args=args)


def decode(fields: Mapping[bytes, bytes]) -> tuple[Position, ...]:
    """The hash as positions; a field that is not ours is skipped rather than trusted."""
    found = []
    for field, value in fields.items():
        topic, _, partition = field.decode(errors="replace").rpartition(":")
        if topic and partition.isdigit() and value.isdigit():
            found.append(Position(topic, int(partition), int(value)))
    return tuple(sorted(found))


async def recall(redis: Redis, writer: str) -> tuple[Position, ...]:
    return decode(await redis.hgetall(writes_key(writer)))


def with_own_writes(token: str | None, own: Iterable[Position]) -> str | None:
    """The token a query waits for: the one sent (if any), raised to the writer's own positions."""
    own = tuple(own)
    if not own:
        return token
    sent = parse_consistency_token(token) if token else []
    return consistency_token([*sent, *own])


class RememberOwnWrites:
    """Pure ASGI middleware: an answer carrying `X-Consistency-Token` for a known writer is recorded
    before its first byte leaves, so the writer's very next query already finds it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_after_remembering(message: Message) -> None:
            if message["type"] == "http.response.start" and state.get(WRITER_STATE):
                token = _header(message, CONSISTENCY_HEADER.lower().encode())
                if token:
                    await _remember_quietly(scope, state[WRITER_STATE], token)
            await send(message)

        await self.app(scope, receive, send_after_remembering)


def _header(message: Message, name: bytes) -> str | None:
    for key, value in message.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _remember_quietly(scope: Scope, writer: str, token: str) -> None:
    """The write is done whatever happens here: without Redis the client still has the token."""
    app_state = scope["app"].state
    redis: Redis | None = getattr(app_state, "redis", None)
    if redis is None:
        return
    try:
        positions = parse_consistency_token(token, limit=None)
        await remember(redis, writer, positions, app_state.settings.consistency_wait_seconds)
    except (RedisError, OSError) as exc:
        logger.warning("could not remember a writer's positions (%s)", type(exc).__name__)
