"""Rate limits in Redis, shared by every service: 429 with `Retry-After` while a limit holds.

Counting is atomic with the check (the count goes up first, in one transaction, and the request is
judged by the count it got), so concurrent requests cannot all slip under a limit.
"""

import math

from redis.asyncio import Redis

from api.common.errors import ApiError


class RateLimited(ApiError):
    def __init__(self, retry_after: float, message: str = "Too many requests; try again later") -> None:
        super().__init__(429, message, headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


async def counted(redis: Redis, key: str, window_seconds: int) -> tuple[int, int]:
    """One more under `key`, in a fixed window that starts at the key's first count: (the count with
    this one, the seconds the window has left)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_seconds, nx=True)
        pipe.ttl(key)
        count, _, ttl = await pipe.execute()
    return int(count), int(ttl)


async def count_in_window(redis: Redis, key: str, limit: int, window_seconds: int, message: str) -> None:
    """At most `limit` requests per key in a fixed window that starts at the key's first request."""
    count, ttl = await counted(redis, key, window_seconds)
    if count > limit:
        raise RateLimited(ttl if ttl > 0 else window_seconds, message)
