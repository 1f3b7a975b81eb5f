"""Read-your-writes: a query sent with `X-Consistency-Token` waits until its store has applied it
(and a signed-in caller's query waits for the caller's own latest writes, `api/common/own_writes.py`).

Every projection records, per store, the highest offset it has applied in each source partition
(`projection_checkpoints`, written with or after the data it covers). A query names the projection
whose store it reads; the wait polls that projection's checkpoints, bounded. When the bound passes
the query answers with what the store has and says so in `X-Consistency: stale`.
"""

import asyncio
import time
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from psycopg import AsyncConnection

from api.common.kafka import Position, parse_consistency_token
from api.common.metrics import observe_consistency_wait

POLL_SECONDS = 0.005


class Reader(Protocol):
    """A pool, or a request's reads (api/common/reads.py: the replica or the primary, kept for the request)."""

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]: ...


async def applied_offsets(pool: Reader, projection: str) -> dict[tuple[str, int], int]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            'SELECT topic, partition, "offset" FROM projection_checkpoints WHERE projection = %s', (projection,)
        )
        return {(topic, partition): offset for topic, partition, offset in await cursor.fetchall()}


def pending(positions: Iterable[Position], applied: dict[tuple[str, int], int]) -> list[Position]:
    return [p for p in positions if applied.get((p.topic, p.partition), -1) < p.offset]


async def wait_for_positions(
    pool: Reader, projection: str, topics: frozenset[str], token: str | None, within: float
) -> bool:
    """True when the store has applied every position of `topics` in the token (or there is none)."""
    if not token:
        return True
    # Routes take the token through `deps.ConsistencyToken`, which checked the client's part already.
    wanted = [p for p in parse_consistency_token(token, limit=None) if p.topic in topics]
    if not wanted:
        return True
    started = time.monotonic()
    deadline = started + within
    while True:
        wanted = pending(wanted, await applied_offsets(pool, projection))
        now = time.monotonic()
        if not wanted or now >= deadline:
            observe_consistency_wait(projection, not wanted, now - started)
            return not wanted
        await asyncio.sleep(POLL_SECONDS)
