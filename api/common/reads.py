"""Which Postgres a query reads: the streaming replica while it answers and keeps up, else the primary.

Commands, projections and every write use the primary. With a replica (cluster mode,
`settings.postgres_replica_dsn`) queries read it, so reads scale by adding replicas. A replica is behind
the primary by the time it takes to replay the WAL; a monitor compares the two every
`postgres_replica_check_seconds`, and the replica is used only while it has replayed everything the
primary had written `postgres_replica_max_lag_seconds` ago. A replica that does not answer, or lags more,
sends queries to the primary until it has caught up again: never older data than that bound without the
consistency wait saying so.

Read-your-writes still holds: a request keeps the database it first read for its whole life
(`query_pool`), so the consistency wait reads the checkpoints of the very database the query then reads.
The one switch allowed is from the replica to the primary (the primary is never behind its replica).
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import psycopg
from fastapi import Request
from psycopg_pool import AsyncConnectionPool, PoolTimeout

logger = logging.getLogger("api.reads")

_PRIMARY_LSN = "SELECT pg_current_wal_lsn() - '0/0'"
# NULL on a server that is not replaying (a primary named as a replica by mistake): never used then.
_REPLAYED_LSN = "SELECT pg_last_wal_replay_lsn() - '0/0'"


class QueryPools:
    """The primary, the replica if any, and whether queries may read the replica now."""

    def __init__(
        self,
        primary: AsyncConnectionPool,
        replica: AsyncConnectionPool | None = None,
        *,
        max_lag_seconds: float = 1.0,
        check_seconds: float = 0.25,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag_seconds = max_lag_seconds
        self.check_seconds = check_seconds
        # How long a query waits for a replica connection before reading the primary instead.
        self.replica_connect_seconds = max(0.5, 2 * check_seconds)
        self._replica_usable = False
        self._why_not = "not checked yet"
        # (monotonic time, primary WAL position) samples, oldest first, spanning the lag bound.
        self._primary_positions: deque[tuple[float, int]] = deque()

    @property
    def replica_usable(self) -> bool:
        return self.replica is not None and self._replica_usable

    def usable_replica(self) -> AsyncConnectionPool | None:
        return self.replica if self.replica_usable else None

    def replica_failed(self, why: str) -> None:
        self._set(False, why)

    def _set(self, usable: bool, why: str) -> None:
        if usable != self._replica_usable:
            if usable:
                logger.info("queries read the replica again")
            else:
                logger.warning("queries read the primary: the replica %s", why)
        self._replica_usable, self._why_not = usable, why

    async def _position(self, pool: AsyncConnectionPool, query: str) -> int | None:
        async with pool.connection(timeout=self.replica_connect_seconds) as conn:
            row = await (await conn.execute(query)).fetchone()
            return None if row is None or row[0] is None else int(row[0])

    async def check(self) -> bool:
        """One comparison of the replica with the primary; True when queries may read the replica."""
        if self.replica is None:
            return False
        now = time.monotonic()
        try:
            primary = await asyncio.wait_for(self._position(self.primary, _PRIMARY_LSN), self.replica_connect_seconds)
        except (TimeoutError, PoolTimeout, psycopg.Error):
            self._set(False, "cannot be compared: the primary does not answer")
            return False
        if primary is not None:
            self._primary_positions.append((now, primary))
        # Keep the newest sample at least `max_lag` old and everything younger.
        horizon = now - self.max_lag_seconds
        while len(self._primary_positions) > 1 and self._primary_positions[1][0] <= horizon:
            self._primary_positions.popleft()
        try:
            replayed = await asyncio.wait_for(self._position(self.replica, _REPLAYED_LSN), self.replica_connect_seconds)
        except (TimeoutError, PoolTimeout, psycopg.Error):
            self._set(False, "does not answer")
            return False
        oldest_time, oldest_position = self._primary_positions[0]
        if replayed is None:
            self._set(False, "is not replaying a primary")
        elif oldest_time > horizon:
            self._set(False, "is being measured")  # no sample old enough yet: only at start
        elif replayed < oldest_position:
            self._set(False, f"has not replayed what the primary had {self.max_lag_seconds:g} s ago")
        else:
            self._set(True, "")
        return self._replica_usable

    async def watch(self) -> None:
        """The monitor: runs for the service's life (cancelled by the lifespan)."""
        while True:
            await self.check()
            await asyncio.sleep(self.check_seconds)

    def status(self) -> dict[str, Any]:
        if self.replica is None:
            return {"queriesRead": "primary", "replica": None}
        return {
            "queriesRead": "replica" if self.replica_usable else "primary",
            "replica": "in use" if self.replica_usable else self._why_not,
        }


class RequestReads:
    """One request's queries: the database it chose first, kept (or left for the primary) for the rest."""

    def __init__(self, pools: QueryPools) -> None:
        self.pools = pools
        self._pool: AsyncConnectionPool | None = None

    @property
    def pool(self) -> AsyncConnectionPool | None:
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with AsyncExitStack() as stack:
            conn = None
            replica = self.pools.usable_replica()
            if self._pool is not self.pools.primary and replica is not None:
                try:
                    conn = await stack.enter_async_context(
                        replica.connection(timeout=self.pools.replica_connect_seconds)
                    )
                    self._pool = replica
                except (PoolTimeout, psycopg.OperationalError):
                    self.pools.replica_failed("refused a connection")
            if conn is None:
                self._pool = self.pools.primary
                conn = await stack.enter_async_context(self.pools.primary.connection())
            yield conn


def query_pool(request: Request) -> RequestReads:
    """The reads of this request (made on first use, then the same for the request's life)."""
    reads: RequestReads | None = getattr(request.state, "reads", None)
    if reads is None:
        reads = RequestReads(request.app.state.query_pools)
        request.state.reads = reads
    return reads
