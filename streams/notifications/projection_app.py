"""The notification read-model projection: `python -m streams.notifications.projection_worker worker -l info`.

Its own consumer group (`settings.notification_projection_group`, default
`notification-projection`) on the lean runner (`streams/runner.py`), reading `notifications` and
`users`: plan (pure) -> Postgres
(rows, unread recounts, checkpoint `notifications-postgres`, one transaction) -> Redis unread counts
-> checkpoint `notifications-redis`. Stores that are down are waited for; poison goes to
`dead-letters` (`dlq.consumer=notification-projection`), and the later events of its key are parked
until it is redriven or skipped (`streams/parking.py`).
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from config import Settings
from schemas.read_models import NOTIFICATIONS_REDIS_CHECKPOINT
from schemas.topics import NOTIFICATIONS, USERS
from streams.batches import until_done
from streams.checkpoints import PostgresCheckpoints
from streams.notifications.projection import PROJECTION_CONSUMER, plan_notifications
from streams.notifications.sinks import PostgresNotificationSink, RedisUnreadSink
from streams.parking import KeyOrder
from streams.positions import RawRecord
from streams.runner import Context, Lane, Projection


class NotificationProjector:
    def __init__(
        self,
        postgres: PostgresNotificationSink,
        redis: RedisUnreadSink,
        checkpoints: PostgresCheckpoints,
        order: KeyOrder,
    ) -> None:
        self._postgres = postgres
        self._redis = redis
        self._checkpoints = checkpoints
        self._order = order

    async def project(self, records: Sequence[RawRecord]) -> None:
        plan = self._order.plan(records, plan_notifications)
        await self._order.dead_letters(plan.dead_letters)
        counts = await until_done("postgres", lambda: self._postgres.apply(plan.changes, plan.positions))
        await until_done("redis", lambda: self._redis.write(counts))
        await until_done("checkpoint", lambda: self._checkpoints.record(NOTIFICATIONS_REDIS_CHECKPOINT, plan.positions))


def projection(settings: Settings) -> Projection:
    return Projection(
        "notification-projection",
        settings.notification_projection_group,
        (NOTIFICATIONS.name, USERS.name),
        batch_size=500,
        batch_seconds=0.02,
        open=_open,
    )


@asynccontextmanager
async def _open(context: Context) -> AsyncIterator[Lane]:
    async with context.postgres() as pool, context.redis() as redis:
        order = context.key_order(pool, PROJECTION_CONSUMER)
        projector = NotificationProjector(
            PostgresNotificationSink(pool), RedisUnreadSink(redis), PostgresCheckpoints(pool), order
        )
        yield context.in_key_order(order, projector.project)
