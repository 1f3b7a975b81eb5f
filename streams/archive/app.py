"""The archive worker: `python -m streams.archive worker -l info`.

Its consumer group is `settings.archive_group` (default `event-archive`), on the lean runner
(`streams/runner.py`). Thin by design: batch the records, plan them (pure), hand rows to the sink and
poison to the dead-letter topic; the batch is committed after. Failures are handled here, never thrown.
"""

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import psycopg

from config import Settings
from schemas.topics import EVENT_TOPICS
from streams.archive.projection import ARCHIVE_CONSUMER, EventStoreRow, RawRecord, plan_archive
from streams.archive.sink import PostgresEventStoreSink
from streams.batches import until_done
from streams.dead_letters import DeadLetter
from streams.runner import Context, Lane, Projection, Publish

log = logging.getLogger("streams.archive")


def archive_topic_names(settings: Settings) -> list[str]:
    override = [name.strip() for name in settings.archive_topics.split(",") if name.strip()]
    return override or [topic.name for topic in EVENT_TOPICS]


class Archiver:
    """Writes one batch: rows to the sink (retrying while Postgres is down), poison to the DLQ."""

    def __init__(self, sink: PostgresEventStoreSink, publish: Publish) -> None:
        self._sink = sink
        self._publish = publish

    async def archive(self, records: Sequence[RawRecord]) -> None:
        plan = plan_archive(records)
        await self._dead_letter(plan.dead_letters)
        try:
            await self._write_until_stored(plan.rows)
        except psycopg.Error as exc:
            # A row Postgres refuses for good (not a connection problem): find it, keep the others.
            log.warning("archive batch refused (%s); writing its events one by one", type(exc).__name__)
            by_position = {r.position: r for r in records}
            for row in plan.rows:
                try:
                    await self._write_until_stored([row])
                except psycopg.Error as row_exc:
                    record = by_position[row.position]
                    await self._dead_letter(
                        [
                            DeadLetter(
                                record.key,
                                record.value,
                                f"postgres refused the event: {row_exc}",
                                record.position,
                                ARCHIVE_CONSUMER,
                            )
                        ]
                    )

    async def _write_until_stored(self, rows: list[EventStoreRow]) -> None:
        await until_done("postgres", lambda: self._sink.write(rows))

    async def _dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        await self._publish(letters)


def projection(settings: Settings) -> Projection:
    return Projection(
        ARCHIVE_CONSUMER,
        settings.archive_group,
        tuple(archive_topic_names(settings)),
        batch_size=settings.archive_batch_size,
        batch_seconds=settings.archive_batch_seconds,
        open=_open,
    )


@asynccontextmanager
async def _open(context: Context) -> AsyncIterator[Lane]:
    async with context.postgres() as pool:
        archiver = Archiver(PostgresEventStoreSink(pool), context.publish)
        yield context.or_dead_letter(ARCHIVE_CONSUMER, archiver.archive)
