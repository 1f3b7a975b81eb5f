"""The property read-model projection: `python -m streams.properties.projection_worker worker -l info`.

Its own consumer group (`settings.property_projection_group`, default `property-projection`) on
the lean runner (`streams/runner.py`). Each batch is split by topic, the two parts written side by side:
- `project_properties` reads `properties`: plan (pure) -> Postgres (rows + checkpoint, one transaction,
  returns each touched property's current row) -> Redis -> its checkpoint.
- `project_views` reads `property-views`: plan (pure) -> Postgres (exact counts + checkpoint, one
  transaction, returns absolute counts) -> Redis -> its checkpoint.
OpenSearch is another group (`streams/properties/search_app.py`), so a slow `_bulk` + `_refresh` never
holds up the stores reads are served from.
The batch is committed once both parts are written, and nothing is thrown from here: a store that
is down is waited for (backoff 0.1 s doubling to 5 s, the partition stays put), and a message or row
a store refuses for good goes to `dead-letters` with the error. Property events keep their order per
property across dead letters: the later events of a property one was dead-lettered for are parked in
`parked_events` until it is redriven or skipped (`streams/parking.py`, `python -m ops.dead_letters`).
Views are counts, which no order changes: they are not parked.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from config import Settings
from schemas.listings import PropertyRow
from schemas.read_models import PROPERTIES_REDIS_CHECKPOINT
from schemas.topics import PROPERTIES, PROPERTY_VIEWS
from streams.batches import apply_isolating_refusals, until_done
from streams.checkpoints import PostgresCheckpoints
from streams.dead_letters import DeadLetter
from streams.parking import KeyOrder
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
from streams.runner import Context, Lane, Projection

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


def projection(settings: Settings) -> Projection:
    return Projection(
        "property-projection",
        settings.property_projection_group,
        (PROPERTIES.name, PROPERTY_VIEWS.name),
        batch_size=settings.property_projection_batch_size,
        batch_seconds=settings.property_projection_batch_seconds,
        open=_open,
    )


@asynccontextmanager
async def _open(context: Context) -> AsyncIterator[Lane]:
    settings = context.settings
    # Listings and views are written side by side (`_Lanes`), so two connections each.
    pool = AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=4, open=False)
    redis = Redis.from_url(settings.redis_url)
    # wait=False: a worker started while Postgres is down still starts, and its writes wait instead.
    await pool.open(wait=False)
    order = context.key_order(pool, PROJECTION_CONSUMER)
    projector = PropertyProjector(
        PostgresPropertySink(pool),
        PostgresViewSink(pool),
        RedisPropertySink(redis),
        PostgresCheckpoints(pool),
        context.publish,
        order,
    )
    listings = context.in_key_order(order, projector.project_properties)
    # Views are counts, which no order changes: they are not parked.
    views = context.or_dead_letter(PROJECTION_CONSUMER, projector.project_views)
    try:
        yield _Lanes(listings, views).lane
    finally:
        await redis.aclose()
        await pool.close()


class _Lanes:
    """One batch of the group holds listings and views: each part goes its own way, side by side, so
    a listing batch waiting out a store does not hold up the views more than before (the batch commits
    once both are written)."""

    def __init__(self, listings: Lane, views: Lane) -> None:
        self._listings = listings
        self._views = views
        self.lane = Lane(self.handle, listings.beside)

    async def handle(self, records: Sequence[RawRecord]) -> None:
        listings = [r for r in records if r.position.topic == PROPERTIES.name]
        views = [r for r in records if r.position.topic != PROPERTIES.name]
        await asyncio.gather(
            *([self._listings.handle(listings)] if listings else []),
            *([self._views.handle(views)] if views else []),
        )
