"""The users read-model projection: `python -m streams.users.projection_worker worker -l info`.

Its own consumer group (`settings.user_projection_group`, default `user-projection`) on the lean
runner (`streams/runner.py`), reading `users`: plan (pure) -> Postgres (rows + checkpoint `users-postgres`, one
transaction, returns current rows) -> Redis `user:{id}` -> checkpoint `users-redis`. Stores that are
down are waited for; poison goes to `dead-letters` (`dlq.consumer=user-projection`), and the user's
later events are parked until it is redriven or skipped (`streams/parking.py`).
"""

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from config import Settings
from schemas.read_models import USERS_REDIS_CHECKPOINT
from schemas.topics import USERS
from streams.batches import until_done
from streams.checkpoints import PostgresCheckpoints
from streams.dead_letters import DeadLetter
from streams.parking import KeyOrder
from streams.positions import RawRecord
from streams.runner import Context, Lane, Projection
from streams.users.projection import PROJECTION_CONSUMER, plan_users
from streams.users.sinks import PostgresUserSink, RedisUserSink

log = logging.getLogger("streams.users.projection")


class UserProjector:
    def __init__(
        self, postgres: PostgresUserSink, redis: RedisUserSink, checkpoints: PostgresCheckpoints, order: KeyOrder
    ) -> None:
        self._postgres = postgres
        self._redis = redis
        self._checkpoints = checkpoints
        self._order = order
        self._dead_letters = order.dead_letters

    async def project(self, records: Sequence[RawRecord]) -> None:
        plan = self._order.plan(records, plan_users)
        await self._dead_letters(plan.dead_letters)
        rows = await until_done("postgres", lambda: self._postgres.apply(plan.changes, plan.positions))
        rows = [row for row in rows if row.complete]
        refused = await until_done("redis", lambda: self._redis.write(rows))
        if refused:
            await self._dead_letters(
                [
                    DeadLetter(r.key, r.value, refused[key], r.position, PROJECTION_CONSUMER)
                    for r in records
                    if r.key and (key := r.key.decode(errors="replace")) in refused
                ]
            )
        await until_done("checkpoint", lambda: self._checkpoints.record(USERS_REDIS_CHECKPOINT, plan.positions))


def projection(settings: Settings) -> Projection:
    return Projection(
        "user-projection",
        settings.user_projection_group,
        (USERS.name,),
        batch_size=500,
        batch_seconds=0.05,
        open=_open,
    )


@asynccontextmanager
async def _open(context: Context) -> AsyncIterator[Lane]:
    async with context.postgres() as pool, context.redis() as redis:
        order = context.key_order(pool, PROJECTION_CONSUMER)
        projector = UserProjector(PostgresUserSink(pool), RedisUserSink(redis), PostgresCheckpoints(pool), order)
        yield context.in_key_order(order, projector.project)
