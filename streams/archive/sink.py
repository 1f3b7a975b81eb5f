"""Writes archive rows into Postgres `event_store`, idempotently.

One statement per batch (arrays unnested server-side) inserts the rows, ignoring event ids already
there, and raises each source partition's checkpoint to the highest offset written, in the same
transaction: a crash between the two is impossible, and a redelivered batch changes nothing.
"""

from collections.abc import Iterable
from datetime import UTC, datetime

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from streams.archive.projection import ARCHIVE_CONSUMER, EventStoreRow

_INSERT_EVENTS = """
INSERT INTO event_store (
    event_id, event_type, source, subject, user_id, session_id, correlation_id, causation_id,
    sequence, occurred_at, data, source_topic, source_partition, source_offset)
SELECT * FROM unnest(
    %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
    %s::bigint[], %s::timestamptz[], %s::jsonb[], %s::text[], %s::integer[], %s::bigint[])
ON CONFLICT (event_id, occurred_at) DO NOTHING
"""

_RAISE_CHECKPOINTS = """
INSERT INTO projection_checkpoints (projection, topic, partition, "offset")
SELECT %s, * FROM unnest(%s::text[], %s::integer[], %s::bigint[])
ON CONFLICT (projection, topic, partition)
DO UPDATE SET "offset" = GREATEST(projection_checkpoints."offset", EXCLUDED."offset"), updated_at = now()
"""


def month_of(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def _highest_offsets(rows: Iterable[EventStoreRow]) -> dict[tuple[str, int], int]:
    highest: dict[tuple[str, int], int] = {}
    for row in rows:
        where = (row.position.topic, row.position.partition)
        highest[where] = max(highest.get(where, -1), row.position.offset)
    return highest


class PostgresEventStoreSink:
    def __init__(self, pool: AsyncConnectionPool, projection: str = ARCHIVE_CONSUMER) -> None:
        self._pool = pool
        self._projection = projection
        # Months whose partition this process has already made sure of.
        self._months_ready: set[datetime] = set()

    async def write(self, rows: list[EventStoreRow]) -> None:
        if not rows:
            return
        new_months = {month_of(r.occurred_at) for r in rows} - self._months_ready
        checkpoints = _highest_offsets(rows)
        async with self._pool.connection() as conn, conn.transaction():
            for month in sorted(new_months):
                await conn.execute("SELECT ensure_event_store_month(%s)", (month,))
            await conn.execute(
                _INSERT_EVENTS,
                (
                    [r.event_id for r in rows],
                    [r.event_type for r in rows],
                    [r.source for r in rows],
                    [r.subject for r in rows],
                    [r.user_id for r in rows],
                    [r.session_id for r in rows],
                    [r.correlation_id for r in rows],
                    [r.causation_id for r in rows],
                    [r.sequence for r in rows],
                    [r.occurred_at for r in rows],
                    [Jsonb(r.data) for r in rows],
                    [r.position.topic for r in rows],
                    [r.position.partition for r in rows],
                    [r.position.offset for r in rows],
                ),
            )
            await conn.execute(
                _RAISE_CHECKPOINTS,
                (
                    self._projection,
                    [topic for topic, _ in checkpoints],
                    [partition for _, partition in checkpoints],
                    list(checkpoints.values()),
                ),
            )
        self._months_ready |= new_months
