"""The file read-model projection: `python -m streams.files.projection_worker worker -l info`.

Its own consumer group (`settings.file_projection_group`, default `file-projection`) on the lean
runner (`streams/runner.py`), reading `files` and `users`: plan (pure) -> Postgres (files, jobs, list versions and the
checkpoint `files-postgres`, one transaction, returns each touched listing's files) -> Redis
`files:property:{id}` -> checkpoint `files-redis`. Stores that are down are waited for; poison goes
to `dead-letters` (`dlq.consumer=file-projection`), and the later events of its key are parked until
it is redriven or skipped (`streams/parking.py`). A batch is committed once all of that is written.
"""

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from config import Settings
from schemas.read_models import FILES_REDIS_CHECKPOINT
from schemas.topics import FILES, USERS
from streams.batches import apply_isolating_refusals, until_done
from streams.checkpoints import PostgresCheckpoints
from streams.dead_letters import DeadLetter
from streams.files.projection import PROJECTION_CONSUMER, PlannedChange, plan_files
from streams.files.sinks import PostgresFileSink, PropertyList, RedisFileListSink
from streams.parking import KeyOrder
from streams.positions import RawRecord, SourcePosition
from streams.runner import Context, Lane, Projection

log = logging.getLogger("streams.files.projection")


class FileProjector:
    def __init__(
        self, postgres: PostgresFileSink, redis: RedisFileListSink, checkpoints: PostgresCheckpoints, order: KeyOrder
    ) -> None:
        self._postgres = postgres
        self._redis = redis
        self._checkpoints = checkpoints
        self._order = order
        self._dead_letters = order.dead_letters

    async def project(self, records: Sequence[RawRecord]) -> None:
        plan = self._order.plan(records, plan_files)
        await self._dead_letters(plan.dead_letters)
        lists = await self._write_postgres(plan.changes, plan.positions)
        refused = await until_done("redis", lambda: self._redis.write(lists))
        if refused:
            log.warning("redis refused the file lists of %s", sorted(refused))
            await self._dead_letters(
                [
                    DeadLetter(
                        p.record.key,
                        p.record.value,
                        "; ".join(refused.values()),
                        p.record.position,
                        PROJECTION_CONSUMER,
                    )
                    for p in plan.changes
                ]
            )
        await until_done("checkpoint", lambda: self._checkpoints.record(FILES_REDIS_CHECKPOINT, plan.positions))

    async def _write_postgres(
        self, changes: Sequence[PlannedChange], positions: Sequence[SourcePosition]
    ) -> list[PropertyList]:
        written = await apply_isolating_refusals(
            "file", self._postgres.apply, changes, positions, self._dead_letter, self._order.holds
        )
        return list({listed.property_id: listed for listed in written}.values())

    async def _dead_letter(self, record: RawRecord, error: str) -> None:
        await self._dead_letters([DeadLetter(record.key, record.value, error, record.position, PROJECTION_CONSUMER)])


def projection(settings: Settings) -> Projection:
    return Projection(
        "file-projection",
        settings.file_projection_group,
        (FILES.name, USERS.name),
        batch_size=500,
        batch_seconds=0.02,
        open=_open,
    )


@asynccontextmanager
async def _open(context: Context) -> AsyncIterator[Lane]:
    async with context.postgres() as pool, context.redis() as redis:
        order = context.key_order(pool, PROJECTION_CONSUMER)
        projector = FileProjector(PostgresFileSink(pool), RedisFileListSink(redis), PostgresCheckpoints(pool), order)
        yield context.in_key_order(order, projector.project)
