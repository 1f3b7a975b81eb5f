"""Writes archive rows into Postgres `event_store`, idempotently.

Each batch is COPYed into a per-connection staging table, then moved with one
`INSERT … ON CONFLICT DO NOTHING`, which ignores event ids already archived. Each source partition's
checkpoint is raised to the highest offset written in the same transaction: a crash between the two
is impossible, and a redelivered batch changes nothing. COPY rather than a parameterised INSERT
because psycopg adapts COPY rows in C; array parameters are adapted in Python and cost 3x more.
"""

from datetime import UTC, datetime

import orjson
from psycopg_pool import AsyncConnectionPool

from schemas.read_models import ARCHIVE_CHECKPOINT
from streams.archive.projection import EventStoreRow
from streams.checkpoints import raise_checkpoints

# Lives as long as the connection; emptied at every commit, so a failed batch leaves nothing behind.
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS event_store_incoming ON COMMIT DELETE ROWS AS
SELECT event_id, event_type, source, subject, user_id, session_id, correlation_id, causation_id,
    sequence, occurred_at, data, source_topic, source_partition, source_offset
FROM event_store WITH NO DATA
"""

_COPY_TO_STAGING = """
COPY event_store_incoming (event_id, event_type, source, subject, user_id, session_id, correlation_id, causation_id,
    sequence, occurred_at, data, source_topic, source_partition, source_offset)
FROM STDIN
"""

_MOVE_STAGED = """
INSERT INTO event_store (event_id, event_type, source, subject, user_id, session_id, correlation_id, causation_id,
    sequence, occurred_at, data, source_topic, source_partition, source_offset)
SELECT event_id, event_type, source, subject, user_id, session_id, correlation_id, causation_id,
    sequence, occurred_at, data, source_topic, source_partition, source_offset
FROM event_store_incoming
ON CONFLICT (event_id, occurred_at) DO NOTHING
"""


def month_of(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


class PostgresEventStoreSink:
    def __init__(self, pool: AsyncConnectionPool, projection: str = ARCHIVE_CHECKPOINT) -> None:
        self._pool = pool
        self._projection = projection
        # Months whose partition this process has already made sure of.
        self._months_ready: set[datetime] = set()

    async def write(self, rows: list[EventStoreRow]) -> None:
        if not rows:
            return
        new_months = {month_of(r.occurred_at) for r in rows} - self._months_ready
        async with self._pool.connection() as conn, conn.transaction():
            for month in sorted(new_months):
                await conn.execute("SELECT ensure_event_store_month(%s)", (month,))
            await conn.execute(_STAGING)
            async with conn.cursor() as cursor:
                async with cursor.copy(_COPY_TO_STAGING) as copy:
                    for r in rows:
                        await copy.write_row(
                            (
                                r.event_id,
                                r.event_type,
                                r.source,
                                r.subject,
                                r.user_id,
                                r.session_id,
                                r.correlation_id,
                                r.causation_id,
                                r.sequence,
                                r.occurred_at,
                                orjson.dumps(r.data).decode(),
                                r.position.topic,
                                r.position.partition,
                                r.position.offset,
                            )
                        )
                await cursor.execute(_MOVE_STAGED)
            await raise_checkpoints(conn, self._projection, [r.position for r in rows])
        self._months_ready |= new_months
