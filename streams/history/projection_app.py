"""The live user-history projection: `python -m streams.history.projection_worker worker -l info`.

Its own consumer group (`settings.history_group`, default `user-history`) on the lean runner
(`streams/runner.py`), over every event topic with a user in it: plan (pure) -> Postgres, in the live generation the
pointer names (held FOR SHARE in the batch's transaction, so a swap never splits a batch) -> Redis
recent lists -> the generation's Redis checkpoint. Erasures are applied to ready snapshots too.
A store that is down is waited for; poison goes to `dead-letters` (`dlq.consumer=user-history`).

Kafka's own tool rebuilds it in place: stop this worker, `ops/kafka-cli consumer-groups --group
user-history --reset-offsets --to-earliest --all-topics --execute`, start it; every write is keyed by
event id, so it converges to the same tables (`make replay-history` wraps exactly this).
"""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from config import Settings
from schemas.topics import DEAD_LETTERS
from streams.batches import StoreUnavailable, until_done
from streams.checkpoints import raise_checkpoints
from streams.dead_letters import DeadLetter
from streams.history.dead_letters import publish_all
from streams.history.generations import Generation, ensure_live, live_generation, ready_snapshots
from streams.history.projection import HISTORY_CONSUMER, HistoryPlan, plan_history
from streams.history.sinks import PostgresHistorySink, RedisRecentSink
from streams.history.topics import history_topic_names
from streams.positions import RawRecord
from streams.runner import Context, Lane, Projection

log = logging.getLogger("streams.history.projection")


class HistoryProjector:
    """Moves one batch through the stores; each is idempotent, so a crash anywhere in here is repaired
    by the batch's redelivery."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        redis: Redis,
        namespace: str,
        dead_letters: Callable[[Sequence[DeadLetter]], Awaitable[None]],
    ) -> None:
        self._pool = pool
        self._namespace = namespace
        self._postgres = PostgresHistorySink()
        self._redis = RedisRecentSink(redis)
        self._dead_letters = dead_letters

    async def project(self, records: Sequence[RawRecord]) -> None:
        plan = plan_history(records)
        await self._dead_letters(plan.dead_letters)
        generation, erased = await until_done("postgres", lambda: self._write_postgres(plan))
        await until_done("redis", lambda: self._redis.write(generation, plan.activities, erased, plan.erasures))
        await until_done("checkpoint", lambda: self._record_redis(generation, plan))

    async def _write_postgres(self, plan: HistoryPlan) -> tuple[Generation, set[str]]:
        async with self._pool.connection() as conn, conn.transaction():
            generation = await live_generation(conn, self._namespace, "FOR SHARE")
            if generation is None:
                raise StoreUnavailable(f"history namespace {self._namespace} has no live generation")
            erased = await self._postgres.write(conn, generation, plan)
            if plan.erasures:
                for snapshot in await ready_snapshots(conn, self._namespace):
                    await self._postgres.erase_in(conn, snapshot, plan.erasures)
            return generation, erased

    async def _record_redis(self, generation: Generation, plan: HistoryPlan) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await raise_checkpoints(conn, generation.redis_checkpoint, plan.positions)


def projection(settings: Settings) -> Projection:
    return Projection(
        "user-history",
        settings.history_group,
        tuple(history_topic_names(settings)),
        batch_size=settings.history_batch_size,
        batch_seconds=settings.history_batch_seconds,
        open=_open,
    )


@asynccontextmanager
async def _open(context: Context) -> AsyncIterator[Lane]:
    settings, producer = context.settings, context.producer
    pool = AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=2, open=False)
    redis = Redis.from_url(settings.redis_url)
    # wait=False: a worker started while Postgres is down still starts, and its writes wait instead.
    await pool.open(wait=False)
    try:
        await until_done("postgres", lambda: ensure_live(pool, settings.history_namespace))

        async def send(letter: DeadLetter) -> Awaitable[object]:
            headers = list(letter.headers())
            sent: Awaitable[object] = await producer.send(
                DEAD_LETTERS.name, letter.value, key=letter.key, headers=headers
            )
            return sent

        async def dead_letters(letters: Sequence[DeadLetter]) -> None:
            await publish_all(send, letters)

        projector = HistoryProjector(pool, redis, settings.history_namespace, dead_letters)
        yield context.or_dead_letter(HISTORY_CONSUMER, projector.project, publish=dead_letters)
    finally:
        await redis.aclose()
        await pool.close()
