"""Which Postgres queries read (api/common/reads.py), against the real single-node Postgres: a "replica"
that is not replaying a primary, or that does not answer, is never read; a request whose replica fails
on it reads the primary instead and keeps it. The replica proper is tested in tests/cluster."""

import pytest
from psycopg_pool import AsyncConnectionPool

from api.common.reads import QueryPools, RequestReads
from tests.support.services import free_port


@pytest.fixture
async def primary(settings):
    async with AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=2, open=False) as pool:
        yield pool


def unanswered_replica(settings) -> AsyncConnectionPool:
    dsn = settings.postgres_dsn.replace(f"port={settings.postgres_port}", f"port={free_port()}")
    return AsyncConnectionPool(dsn, min_size=0, max_size=1, open=False, kwargs={"connect_timeout": 1})


async def test_without_a_replica_queries_read_the_primary(primary):
    pools = QueryPools(primary)
    assert await pools.check() is False
    assert pools.status() == {"queriesRead": "primary", "replica": None}
    reads = RequestReads(pools)
    async with reads.connection() as conn:
        await conn.execute("SELECT 1")
    assert reads.pool is primary


async def test_a_server_that_replays_nothing_is_never_read_as_a_replica(settings, primary):
    async with AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=1, open=False) as not_a_replica:
        pools = QueryPools(primary, not_a_replica, max_lag_seconds=0.01, check_seconds=0.01)
        for _ in range(3):
            assert await pools.check() is False
        assert pools.status() == {"queriesRead": "primary", "replica": "is not replaying a primary"}


async def test_a_replica_that_does_not_answer_is_left_for_the_primary(settings, primary):
    replica = unanswered_replica(settings)
    await replica.open(wait=False)
    try:
        pools = QueryPools(primary, replica, max_lag_seconds=0.01, check_seconds=0.01)
        assert await pools.check() is False
        assert pools.status() == {"queriesRead": "primary", "replica": "does not answer"}
    finally:
        await replica.close()


async def test_a_request_whose_replica_fails_reads_the_primary_and_keeps_it(settings, primary):
    replica = unanswered_replica(settings)
    await replica.open(wait=False)
    try:
        pools = QueryPools(primary, replica, check_seconds=0.1)
        pools._set(True, "")  # the monitor's last word: usable; the replica dies before the next check
        reads = RequestReads(pools)
        async with reads.connection() as conn:
            row = await (await conn.execute("SELECT pg_is_in_recovery()")).fetchone()
        assert row == (False,)
        assert reads.pool is primary
        assert not pools.replica_usable
        # Even were the replica usable again, this request stays on the primary (never older data mid-request).
        pools._set(True, "")
        async with reads.connection():
            pass
        assert reads.pool is primary
    finally:
        await replica.close()
