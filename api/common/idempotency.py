"""`Idempotency-Key`: a retried command returns the first answer and produces nothing new.

The first request with a key reserves it in Redis (SET NX) together with a fingerprint of the request;
its final answer is stored under the key for a day. A retry with the same key and the same request
replays that answer; with a different request it is refused (422); while the first is still in
flight it is told to retry (409). Answers that decided nothing (503: no decision yet) are not stored,
so a retry goes through again, and since the command id is derived from the key, the decider
recognises the command and applies it at most once.
"""

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from api.common.errors import ApiError, field_error
from schemas.read_models import idempotency_slot

IDEMPOTENCY_HEADER = "Idempotency-Key"
TTL_SECONDS = 24 * 60 * 60
_REPLAYED_HEADERS = ("location", "etag", "x-consistency-token")


def fingerprint(method: str, path: str, body: Any) -> str:
    return hashlib.sha256(orjson.dumps([method, path, body], option=orjson.OPT_SORT_KEYS)).hexdigest()


def derived_id(prefix: str, scope: str, user_id: str, key: str) -> str:
    """The same (scope, user, key) always names the same command or aggregate."""
    return f"{prefix}-" + hashlib.sha256(f"{scope}|{user_id}|{key}".encode()).hexdigest()[:32]


async def idempotent(
    redis: Redis,
    *,
    scope: str,
    user_id: str,
    key: str | None,
    request_fingerprint: str,
    answer: Callable[[], Awaitable[JSONResponse]],
) -> JSONResponse:
    if key is None:
        return await answer()
    if not 1 <= len(key) <= 200:
        raise ApiError(422, "Invalid Idempotency-Key", [field_error(IDEMPOTENCY_HEADER, "1 to 200 characters")])
    slot = idempotency_slot(scope, user_id, hashlib.sha256(key.encode()).hexdigest())
    reserved = await redis.set(slot, orjson.dumps({"fingerprint": request_fingerprint}), nx=True, ex=TTL_SECONDS)
    if not reserved:
        return _replay(await redis.get(slot), request_fingerprint)
    try:
        response = await answer()
    except ApiError as exc:
        if exc.status >= 500:
            await redis.delete(slot)
        else:
            await _store(redis, slot, request_fingerprint, exc.status, exc.body(), exc.headers or {})
        raise
    except BaseException:
        await redis.delete(slot)
        raise
    if response.status_code >= 500:
        await redis.delete(slot)
    else:
        await _store(
            redis, slot, request_fingerprint, response.status_code, orjson.loads(response.body), response.headers
        )
    return response


async def _store(redis: Redis, slot: str, request_fingerprint: str, status: int, body: Any, headers: Any) -> None:
    kept = {name: value for name, value in dict(headers).items() if name.lower() in _REPLAYED_HEADERS}
    record = {"fingerprint": request_fingerprint, "status": status, "body": body, "headers": kept}
    await redis.set(slot, orjson.dumps(record), ex=TTL_SECONDS)


def _replay(raw: bytes | None, request_fingerprint: str) -> JSONResponse:
    if raw is None:  # expired between our SET and GET: vanishingly rare, and safe to ask again
        raise ApiError(
            409, "Request with this Idempotency-Key is being retried; try again", headers={"Retry-After": "1"}
        )
    record = orjson.loads(raw)
    if record["fingerprint"] != request_fingerprint:
        raise ApiError(
            422,
            "This Idempotency-Key was used for a different request",
            [field_error(IDEMPOTENCY_HEADER, "reuse a key only to retry the very same request")],
        )
    if "status" not in record:
        raise ApiError(409, "A request with this Idempotency-Key is still in progress", headers={"Retry-After": "1"})
    headers = {**record["headers"], "Idempotent-Replay": "true"}
    return JSONResponse(record["body"], status_code=record["status"], headers=headers)
