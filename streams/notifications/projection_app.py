"""The notification read-model projection: `python -m streams.notifications.projection_worker worker -l info`.

Its own Faust app and consumer group (`settings.notification_projection_group`, default
`notification-projection`). One thin agent on `notifications` and `users`: plan (pure) -> Postgres
(rows, unread recounts, checkpoint `notifications-postgres`, one transaction) -> Redis unread counts
-> checkpoint `notifications-redis`. Stores that are down are waited for; poison goes to
`dead-letters` (`dlq.consumer=notification-projection`), and the later events of its key are parked
until it is redriven or skipped (`streams/parking.py`).
"""

from collections.abc import Sequence

import faust
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from config import get_settings
from schemas.read_models import NOTIFICATIONS_REDIS_CHECKPOINT
from schemas.topics import NOTIFICATIONS, USERS
from streams.app import create_app
from streams.batches import take_batches, until_done
from streams.checkpoints import PostgresCheckpoints
from streams.notifications.projection import PROJECTION_CONSUMER, plan_notifications
from streams.notifications.sinks import PostgresNotificationSink, RedisUnreadSink
from streams.parking import KeyOrder, key_order, run_in_key_order
from streams.positions import RawRecord

settings = get_settings()
app = create_app(settings.notification_projection_group, settings)
source_topic = app.topic(NOTIFICATIONS.name, USERS.name, key_serializer="raw", value_serializer="raw")


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


@app.agent(source_topic)
async def project_notifications(stream: faust.StreamT[bytes]) -> None:
    pool = AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=2, open=False)
    redis = Redis.from_url(settings.redis_url)
    await pool.open(wait=False)
    order = key_order(app, pool, PROJECTION_CONSUMER)
    projector = NotificationProjector(
        PostgresNotificationSink(pool), RedisUnreadSink(redis), PostgresCheckpoints(pool), order
    )
    try:
        await run_in_key_order(app, order, take_batches(stream, 500, within=0.02), projector.project)
    finally:
        await redis.aclose()
        await pool.close()
