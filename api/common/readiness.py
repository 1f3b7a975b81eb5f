"""`/ready`: is each dependency this service uses answering now?

Each check is a real round trip, bounded by `settings.ready_timeout_seconds`, and holds no state of
its own: a dependency that comes back is seen as up on the next call, without a restart.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from opensearchpy import AsyncOpenSearch
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from api.common.kafka import EventProducer

logger = logging.getLogger("api.readiness")


@dataclass(frozen=True)
class Check:
    name: str
    probe: Callable[[], Awaitable[object]]  # raises (or hangs) when the dependency is down


def kafka_check(producer: EventProducer) -> Check:
    return Check("kafka", producer.check)


def postgres_check(pool: AsyncConnectionPool, timeout: float) -> Check:
    async def probe() -> None:
        # The pool validates a connection before lending it (check_connection), so one killed by a
        # Postgres restart is replaced instead of failing this and later checks.
        async with pool.connection(timeout=timeout) as conn:
            await conn.execute("SELECT 1")

    return Check("postgres", probe)


def redis_check(client: Redis) -> Check:
    return Check("redis", client.ping)


def opensearch_check(client: AsyncOpenSearch) -> Check:
    async def probe() -> None:
        health = await client.cluster.health()
        if health.get("status") == "red":
            raise RuntimeError("cluster health is red")

    return Check("opensearch", probe)


async def _probe(check: Check, within: float) -> str | None:
    """None when up, else why it is down (for the client: no internals, no connection strings)."""
    try:
        await asyncio.wait_for(check.probe(), within)
    except TimeoutError:
        logger.warning("%s did not answer within %ss", check.name, within)
        return f"did not answer within {within:g}s"
    except Exception as exc:
        logger.warning("%s is down: %s: %s", check.name, type(exc).__name__, exc)
        return "not reachable"
    return None


async def probe_all(checks: list[Check], within: float) -> dict[str, str | None]:
    results = await asyncio.gather(*(_probe(check, within) for check in checks))
    return {check.name: result for check, result in zip(checks, results, strict=True)}
