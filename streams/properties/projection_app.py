"""The property read-model projection: `python -m streams.properties.projection_worker worker -l info`.

Its own Faust app, so its own consumer group (`settings.property_projection_group`, default
`property-projection`). Two thin agents:
- `project_properties` reads `properties`: plan (pure) -> Postgres (rows + checkpoint, one transaction,
  returns each touched property's current row) -> Redis -> its checkpoint.
- `project_views` reads `property-views`: plan (pure) -> Postgres (exact counts + checkpoint, one
  transaction, returns absolute counts) -> Redis -> its checkpoint.
OpenSearch is another group (`streams/properties/search_app.py`), so a slow `_bulk` + `_refresh` never
holds up the stores reads are served from.
Faust acks a batch when the loop body returns, even when it raised, so nothing is thrown from here:
a store that is down is waited for (backoff 0.1 s doubling to 5 s, the partition stays put), and a
message or row a store refuses for good goes to `dead-letters` with the error. Property events keep
their order per property across dead letters: the later events of a property one was dead-lettered
for are parked in `parked_events` until it is redriven or skipped (`streams/parking.py`,
`python -m ops.dead_letters`). Views are counts, which no order changes: they are not parked.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence

import faust
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from config import get_settings
from schemas.listings import PropertyRow
from schemas.read_models import PROPERTIES_REDIS_CHECKPOINT
from schemas.topics import PROPERTIES, PROPERTY_VIEWS
from streams.app import create_app
from streams.batches import apply_isolating_refusals, record_of, take_batches, until_done
from streams.checkpoints import PostgresCheckpoints
from streams.dead_letters import DeadLetter, or_dead_letter, publish_dead_letters
from streams.parking import KeyOrder, key_order, run_in_key_order
from streams.positions import RawRecord, SourcePosition
from streams.properties.projection import (
    PROJECTION_CONSUMER,
    PlannedChange,
    plan_properties,
    plan_views,
)
from streams.properties.sinks import (
    PostgresPropertySink,
    PostgresViewSink,
    RedisPropertySink,
)

log = logging.getLogger("streams.properties.projection")


class PropertyProjector:
    """Moves one batch through the sinks in order; every store is idempotent, so a crash anywhere in
    here is repaired by the redelivery of the batch."""

    def __init__(
        self,
        postgres: PostgresPropertySink,
        views: PostgresViewSink,
        redis: RedisPropertySink,
        checkpoints: PostgresCheckpoints,
        dead_letters: Callable[[Sequence[DeadLetter]], Awaitable[None]],
        order: KeyOrder,
    ) -> None:
        self._postgres = postgres
        self._views = views
        self._redis = redis
        self._checkpoints = checkpoints
        self._dead_letters = dead_letters
        self._order = order

    async def project_properties(self, records: Sequence[RawRecord]) -> None:
        plan = self._order.plan(records, plan_properties)
        await self._order.dead_letters(plan.dead_letters)
        rows = await self._write_postgres(plan.changes, plan.positions)
        # A row that has not seen its creation (only in a partial replay) has nothing to show yet.
        rows = [row for row in rows if row.complete]
        by_property: dict[str, list[RawRecord]] = {}
        for planned in plan.changes:
            by_property.setdefault(planned.change.property_id, []).append(planned.record)

        refused = await until_done("redis", lambda: self._redis.write_properties(rows))
        await self._refused(refused, by_property, self._order.dead_letters)
        await until_done("checkpoint", lambda: self._checkpoints.record(PROPERTIES_REDIS_CHECKPOINT, plan.positions))

    async def project_views(self, records: Sequence[RawRecord]) -> None:
        plan = plan_views(records)
        await self._dead_letters(plan.dead_letters)
        totals = await until_done("postgres views", lambda: self._views.apply(plan.views, plan.positions))
        refused = await until_done("redis views", lambda: self._redis.write_views(totals))
        by_property: dict[str, list[RawRecord]] = {}
        for record in records:
            by_property.setdefault(record.key.decode(errors="replace") if record.key else "", []).append(record)
        await self._refused(refused, by_property, self._dead_letters)
        await until_done("checkpoint", lambda: self._checkpoints.record(PROPERTIES_REDIS_CHECKPOINT, plan.positions))

    async def _write_postgres(
        self, changes: Sequence[PlannedChange], positions: Sequence[SourcePosition]
    ) -> list[PropertyRow]:
        written = await apply_isolating_refusals(
            "property", self._postgres.apply, changes, positions, self._dead_letter, self._order.holds
        )
        return list({row.id: row for row in written}.values())

    async def _dead_letter(self, record: RawRecord, error: str) -> None:
        letter = DeadLetter(record.key, record.value, error, record.position, PROJECTION_CONSUMER)
        await self._order.dead_letters([letter])

    async def _refused(
        self,
        refused: dict[str, str],
        records_by_property: dict[str, list[RawRecord]],
        dead_letters: Callable[[Sequence[DeadLetter]], Awaitable[None]],
    ) -> None:
        letters = [
            DeadLetter(record.key, record.value, error, record.position, PROJECTION_CONSUMER)
            for property_id, error in refused.items()
            for record in records_by_property.get(property_id, [])
        ]
        await dead_letters(letters)


settings = get_settings()
app = create_app(settings.property_projection_group, settings)
properties_topic = app.topic(PROPERTIES.name, key_serializer="raw", value_serializer="raw")
views_topic = app.topic(PROPERTY_VIEWS.name, key_serializer="raw", value_serializer="raw")


_BATCH_SECONDS = settings.property_projection_batch_seconds


class _Stores:
    """Clients of one agent, opened inside it (never at import) and closed when it stops."""

    def __init__(self) -> None:
        self.pool = AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=2, open=False)
        self.redis = Redis.from_url(settings.redis_url)

    async def open(self) -> PropertyProjector:
        # wait=False: a worker started while Postgres is down still starts, and its writes wait instead.
        await self.pool.open(wait=False)

        async def dead_letters(letters: Sequence[DeadLetter]) -> None:
            await publish_dead_letters(app, letters)

        self.order = key_order(app, self.pool, PROJECTION_CONSUMER)
        return PropertyProjector(
            PostgresPropertySink(self.pool),
            PostgresViewSink(self.pool),
            RedisPropertySink(self.redis),
            PostgresCheckpoints(self.pool),
            dead_letters,
            self.order,
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.pool.close()


@app.agent(properties_topic)
async def project_properties(stream: faust.StreamT[bytes]) -> None:
    stores = _Stores()
    projector = await stores.open()
    try:
        batches = take_batches(stream, settings.property_projection_batch_size, within=_BATCH_SECONDS)
        await run_in_key_order(app, stores.order, batches, projector.project_properties)
    finally:
        await stores.close()


@app.agent(views_topic)
async def project_views(stream: faust.StreamT[bytes]) -> None:
    stores = _Stores()
    projector = await stores.open()
    try:
        batches = take_batches(stream, settings.property_projection_batch_size, within=_BATCH_SECONDS)
        async for events in batches:
            records = [record_of(event) for event in events]
            await or_dead_letter(app, PROJECTION_CONSUMER, records, projector.project_views)
    finally:
        await stores.close()
