"""The notification delivery reactor: `python -m streams.notifications.delivery_worker worker -l info`.

Its own Faust app and consumer group (`settings.notification_delivery_group`, default
`notification-delivery`), with three parts (see `streams/notifications/delivery.py`):
- agent `take_requests` on `notifications`: requests into the durable schedule (Postgres);
- agent `take_triggers` on `searches` and `users`: saved-search matches and registrations become
  requests (produced to `notifications`), closed accounts' pending deliveries are erased;
- task `dispatch`: sends what is due (SMTP, the SMS gateway, the in-app inbox), retries with backoff,
  reports `notification.sent/failed/deferred/suppressed`, dead-letters what gave up.
Several workers may share the group: the dispatcher claims rows with `FOR UPDATE SKIP LOCKED`.
"""

import asyncio
import logging
from collections.abc import Sequence

import faust
import httpx
from psycopg_pool import AsyncConnectionPool

from config import get_settings
from schemas.topics import NOTIFICATIONS, SEARCHES, USERS
from streams.app import create_app
from streams.batches import record_of, take_batches
from streams.dead_letters import DeadLetter, or_dead_letter, publish_dead_letters
from streams.notifications.delivery import DeliveryReactor
from streams.notifications.policy import DELIVERY_CONSUMER
from streams.notifications.senders import SmsGateway, SmtpSender
from streams.notifications.store import DeliveryStore
from streams.notifications.triggers import TRIGGER_CONSUMER

log = logging.getLogger("streams.notifications.delivery_app")

settings = get_settings()
app = create_app(settings.notification_delivery_group, settings)
notifications_topic = app.topic(NOTIFICATIONS.name, key_serializer="raw", value_serializer="raw")
triggers_topic = app.topic(SEARCHES.name, USERS.name, key_serializer="raw", value_serializer="raw")


class _Runtime:
    """Clients shared by the agents and the dispatcher, opened on first use inside the worker's loop."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._reactor: DeliveryReactor | None = None

    async def reactor(self) -> DeliveryReactor:
        async with self._lock:
            if self._reactor is None:
                pool = AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=4, open=False)
                await pool.open(wait=False)
                http = httpx.AsyncClient()

                async def produce(topic: str, key: bytes, value: bytes) -> None:
                    await app.producer.send_and_wait(topic, key, value, partition=None, timestamp=None, headers=None)

                async def dead_letters(letters: Sequence[DeadLetter]) -> None:
                    await publish_dead_letters(app, letters)

                self._reactor = DeliveryReactor(
                    settings,
                    DeliveryStore(pool, settings.notification_delivery_group),
                    SmtpSender(settings),
                    SmsGateway(settings, http),
                    produce,
                    dead_letters,
                )
            return self._reactor


runtime = _Runtime()


@app.agent(notifications_topic)
async def take_requests(stream: faust.StreamT[bytes]) -> None:
    reactor = await runtime.reactor()
    async for events in take_batches(stream, 500, within=0.01):
        records = [record_of(event) for event in events]
        await or_dead_letter(app, DELIVERY_CONSUMER, records, reactor.take_requests)


@app.agent(triggers_topic)
async def take_triggers(stream: faust.StreamT[bytes]) -> None:
    reactor = await runtime.reactor()
    async for events in take_batches(stream, 500, within=0.02):
        records = [record_of(event) for event in events]
        await or_dead_letter(app, TRIGGER_CONSUMER, records, reactor.take_triggers)


@app.task
async def dispatch() -> None:
    reactor = await runtime.reactor()
    log.info("dispatcher %s started", settings.notification_delivery_group)
    await reactor.run_dispatcher()
