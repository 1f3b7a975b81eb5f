"""Blue/green rebuilds of user history: a fresh generation filled from Kafka while the live one keeps
answering, then swapped in atomically.

    job ─> new generation (schema, no secondary indexes) ─> seed (a rebuild from a timestamp: the live
    rows before it) ─> bulk load to the head as it was at the start (aiokafka getmany + COPY, positions
    written with the rows) ─> erasures applied once, indexes built, Redis recent lists derived from the
    rows ─> catch up with the live head (rows + Redis per batch) ─> swap: lock the pointer (the live
    projection's next batch waits), catch up with what the live projection had applied, point to the
    new generation, commit ─> drop the old one.

Variants (see `Rebuild.run`): `until` makes a read-only snapshot that stops at the offsets for that
time (offsetsForTimes) and is never swapped in; `user_id` rebuilds one user's history into a staging
generation and replaces that user's rows in the live generation in one transaction.

Why not Faust here: a rebuild reads everything, in bulk, from positions it chooses. A plain aiokafka
consumer with manual assignment seeks straight to those offsets (no group join, no rebalance), fetches
thousands of records per call, and the sink COPYs each batch in one round trip; Faust's per-event
machinery (streams, acks, per-message callbacks) costs more than the decoding itself and was measured
at ~8k events/s for the archive. The rebuild still has its own consumer group
(`user-history-rebuild-<job>`), committing offsets after each batch so Kafka's tools show its lag;
it resumes from the positions written with its rows (`projection_checkpoints`), which cannot run ahead
of the data even with `synchronous_commit = off`.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from schemas.history import RECENT_SIZE, JobPhase
from schemas.topics import DEAD_LETTERS
from streams.checkpoints import raise_checkpoints
from streams.dead_letters import DeadLetter
from streams.history.dead_letters import publish_all
from streams.history.generations import (
    Generation,
    build_indexes,
    by_job,
    checkpoints,
    create_generation,
    delete_redis_keys,
    drop_generation,
    live_generation,
    point_to,
    set_state,
)
from streams.history.projection import HistoryPlan, plan_history
from streams.history.sinks import (
    ACTIVITY_COLUMNS,
    PostgresHistorySink,
    RedisRecentSink,
    tombstone_key,
)
from streams.positions import RawRecord, SourcePosition

log = logging.getLogger("streams.history.rebuild")

REBUILD_CONSUMER = "user-history-rebuild"
# How long a swap may hold the pointer (the live projection waits meanwhile) to catch up with it.
SWAP_CATCH_UP_SECONDS = 10.0
PROGRESS_EVERY_SECONDS = 0.5

Offsets = dict[TopicPartition, int]


def offsets_json(offsets: Offsets) -> dict[str, int]:
    return {f"{tp.topic}:{tp.partition}": offset for tp, offset in sorted(offsets.items())}


def offsets_from_json(document: dict[str, int]) -> Offsets:
    parsed: Offsets = {}
    for where, offset in document.items():
        topic, partition = where.rsplit(":", 1)
        parsed[TopicPartition(topic, int(partition))] = int(offset)
    return parsed


def rebuild_group(job_id: str) -> str:
    return f"user-history-rebuild-{job_id}"


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    namespace: str
    user_id: str | None = None
    from_time: datetime | None = None
    until: datetime | None = None

    @property
    def kind(self) -> str:
        if self.until is not None:
            return "snapshot"
        return "staging" if self.user_id is not None else "live"


@dataclass
class Progress:
    """Events processed against events to process, counted in offsets from the job's start positions."""

    start: Offsets
    target: Offsets
    applied: Offsets = field(default_factory=dict)  # next offset to read, per partition
    phase: str = JobPhase.QUEUED
    first_at: float | None = None
    processed_at_first: int = 0

    @property
    def processed(self) -> int:
        return sum(max(0, self.applied.get(tp, start) - start) for tp, start in self.start.items())

    @property
    def total(self) -> int:
        return max(self.processed, sum(max(0, self.target.get(tp, s) - s) for tp, s in self.start.items()))

    def rate(self) -> float | None:
        if self.first_at is None:
            return None
        elapsed = time.monotonic() - self.first_at
        return (self.processed - self.processed_at_first) / elapsed if elapsed > 0.2 else None

    def eta(self) -> float | None:
        rate = self.rate()
        if not rate:
            return None
        return max(0.0, (self.total - self.processed) / rate)


Report = Callable[[Progress, Generation | None], Awaitable[None]]


class NotCaughtUp(Exception):
    """The swap could not catch up with the live projection within its bound; it is tried again."""


class Rebuild:
    def __init__(
        self,
        spec: JobSpec,
        *,
        pool: AsyncConnectionPool,
        redis: Redis,
        producer: AIOKafkaProducer,
        bootstrap: str,
        topics: Sequence[str],
        report: Report,
        batch_size: int = 5000,
        max_events_per_second: float = 0.0,
        stored_offsets: dict[str, dict[str, int] | None] | None = None,
        promote: bool = True,
    ) -> None:
        self.spec = spec
        self._pool = pool
        self._redis = redis
        self._producer = producer
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._report_to = report
        self._batch_size = batch_size
        self._max_rate = max_events_per_second
        self._stored = stored_offsets or {}
        # False only for the benchmark: everything up to the swap, then the candidate is dropped.
        self._promote = promote
        self._postgres = PostgresHistorySink()
        self._recent = RedisRecentSink(redis)
        self._consumer: AIOKafkaConsumer | None = None
        self.generation: Generation | None = None
        self.progress: Progress | None = None
        self.offsets: dict[str, Offsets] = {}
        self._last_report = 0.0
        self._phase_started = time.monotonic()
        self._resumed = False

    # ---- the job ----

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=rebuild_group(self.spec.job_id),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        self._consumer = consumer
        try:
            await self._run(consumer)
        finally:
            self._consumer = None
            await consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        partitions = await self._partitions()
        start, load, stop = await self._positions(consumer, partitions)
        self.offsets = {"start": start, "load": load, **({"stop": stop} if stop is not None else {})}
        generation = await self._generation()
        self.generation = generation
        self.progress = Progress(start=start, target=stop if stop is not None else load)

        await self._phase(JobPhase.SEEDING)
        await self._seed(generation, start)
        resume = await self._resume_positions(generation, start)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, resume[tp])
        self.progress.applied = dict(resume)

        await self._phase(JobPhase.LOADING)
        await self._load(consumer, generation, until=stop if stop is not None else load, bulk=True)
        await self._finish_bulk(generation)

        if self.spec.kind == "snapshot":
            await self._publish_snapshot(generation)
            await self._phase(JobPhase.DONE)
            return
        await self._phase(JobPhase.CATCHING_UP)
        while True:
            await self._catch_up(consumer, generation)
            await self._phase(JobPhase.SWAPPING)
            try:
                if not self._promote:
                    break
                if self.spec.kind == "live":
                    await self._swap(consumer, generation)
                else:
                    await self._merge_user(consumer, generation)
                break
            except NotCaughtUp:
                log.info("job %s: not caught up with the live projection yet; catching up again", self.spec.job_id)
                await self._phase(JobPhase.CATCHING_UP)
        await self._commit_offsets(consumer)
        await self._phase(JobPhase.DONE)

    # ---- positions ----

    async def _partitions(self) -> list[TopicPartition]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await admin.start()
        try:
            described = {d["topic"]: d for d in await admin.describe_topics(self._topics)}
        finally:
            await admin.close()
        partitions = []
        for topic in self._topics:
            found = described.get(topic)
            if found is None or found.get("error_code") or not found["partitions"]:
                raise RuntimeError(f"topic {topic} does not exist")
            partitions += [
                TopicPartition(topic, p["partition"]) for p in sorted(found["partitions"], key=lambda p: p["partition"])
            ]
        return partitions

    async def _positions(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> tuple[Offsets, Offsets, Offsets | None]:
        """Where to start, where the bulk load ends (the head now), where a snapshot stops. Stored with the
        job at its first run, so a resumed job keeps them."""
        if self._stored.get("start") and self._stored.get("load"):
            stop_doc = self._stored.get("stop")
            return (
                offsets_from_json(self._stored["start"] or {}),
                offsets_from_json(self._stored["load"] or {}),
                offsets_from_json(stop_doc) if stop_doc else None,
            )
        beginning = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        start = dict(beginning)
        if self.spec.from_time is not None:
            start = await self._offsets_for_time(consumer, partitions, self.spec.from_time, end)
        stop = None
        if self.spec.until is not None:
            stop = await self._offsets_for_time(consumer, partitions, self.spec.until, end)
            stop = {tp: max(stop[tp], start[tp]) for tp in partitions}
        return start, dict(end), stop

    @staticmethod
    async def _offsets_for_time(
        consumer: AIOKafkaConsumer, partitions: list[TopicPartition], moment: datetime, end: Offsets
    ) -> Offsets:
        """The first offset whose record time is at or after `moment` (Kafka's offsetsForTimes on the
        records' timestamps); the end when every record is older."""
        found = await consumer.offsets_for_times({tp: int(moment.timestamp() * 1000) for tp in partitions})
        return {tp: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in partitions}

    async def _resume_positions(self, generation: Generation, start: Offsets) -> Offsets:
        async with self._pool.connection() as conn:
            applied = await checkpoints(conn, generation.postgres_checkpoint)
        return {tp: max(offset, applied.get((tp.topic, tp.partition), -1) + 1) for tp, offset in start.items()}

    # ---- generation ----

    async def _generation(self) -> Generation:
        existing = None
        async with self._pool.connection() as conn:
            existing = await by_job(conn, self.spec.job_id)
        if existing is not None and existing.state == "building":
            log.info("job %s: resuming into %s", self.spec.job_id, existing.schema)
            self._resumed = True
            return existing
        return await create_generation(
            self._pool, self.spec.namespace, self.spec.kind, job_id=self.spec.job_id, scope_user_id=self.spec.user_id
        )

    async def _seed(self, generation: Generation, start: Offsets) -> None:
        """Every erasure the live generation knows, and, for a rebuild from a timestamp, its rows from
        before that point (a one-user rebuild: that user's rows and every view)."""
        async with self._pool.connection() as conn, conn.transaction():
            live = await live_generation(conn, self.spec.namespace)
            if live is None or live.number == generation.number:
                return
            await conn.execute(
                sql.SQL("INSERT INTO {new} SELECT * FROM {old} ON CONFLICT DO NOTHING").format(
                    new=generation.table("erased_users"), old=live.table("erased_users")
                )
            )
            if self.spec.from_time is None:
                return
            where = [tp for tp, offset in start.items() if offset > 0]
            starts = ([tp.topic for tp in where], [tp.partition for tp in where], [start[tp] for tp in where])
            for table, scoped in (("activities", True), ("property_owners", False)):
                scope = sql.SQL("")
                parameters: tuple[Any, ...] = starts
                if scoped and self.spec.user_id is not None:
                    scope = sql.SQL(" AND (r.user_id = %s OR r.activity_type = 'property.viewed')")
                    parameters = (*starts, self.spec.user_id)
                await conn.execute(
                    sql.SQL(
                        "INSERT INTO {new} SELECT r.* FROM {old} r"
                        " JOIN unnest(%s::text[], %s::integer[], %s::bigint[]) AS s(topic, partition, start)"
                        " ON r.source_topic = s.topic AND r.source_partition = s.partition"
                        " WHERE r.source_offset < s.start{scope} ON CONFLICT DO NOTHING"
                    ).format(new=generation.table(table), old=live.table(table), scope=scope),
                    parameters,
                )
            seeded = [SourcePosition(tp.topic, tp.partition, start[tp] - 1) for tp in where]
            await raise_checkpoints(conn, generation.postgres_checkpoint, seeded)

    # ---- loading ----

    async def _load(self, consumer: AIOKafkaConsumer, generation: Generation, until: Offsets, bulk: bool) -> None:
        """Reads every partition up to `until` (exclusive). Planning a batch (CPU, here) overlaps with
        writing the previous one (Postgres, another process): two cores, both busy."""
        assert self.progress is not None
        todo = {tp for tp in consumer.assignment() if self.progress.applied.get(tp, 0) < until.get(tp, 0)}
        consumer.pause(*(set(consumer.assignment()) - todo))
        consumer.resume(*todo)
        writing: asyncio.Task[None] | None = None
        read, reading_since = 0, time.monotonic()
        try:
            while todo:
                batches = await consumer.getmany(*todo, timeout_ms=500, max_records=self._batch_size)
                records: list[RawRecord] = []
                for tp, messages in batches.items():
                    if not messages:
                        continue
                    limit = until.get(tp, 0)
                    for message in messages:
                        if message.offset >= limit:
                            break
                        position = SourcePosition(tp.topic, tp.partition, message.offset)
                        records.append(RawRecord(message.key, message.value, position))
                    if messages[-1].offset >= limit:
                        # Fetched past the limit: read those again when (if) a later phase goes further.
                        consumer.seek(tp, limit)
                        self.progress.applied[tp] = limit
                    else:
                        self.progress.applied[tp] = messages[-1].offset + 1
                done = {tp for tp in todo if self.progress.applied.get(tp, 0) >= until.get(tp, 0)}
                if done:
                    consumer.pause(*done)
                    todo -= done
                if not records:
                    continue
                if self.progress.first_at is None:
                    self.progress.first_at = time.monotonic()
                    self.progress.processed_at_first = self.progress.processed - len(records)
                plan = self._plan(records)
                if writing is not None:
                    await writing
                writing = asyncio.create_task(
                    self._write_bulk(generation, plan) if bulk else self._write(generation, plan)
                )
                await self._maybe_report()
                read += len(records)
                if self._max_rate > 0:
                    await asyncio.sleep(read / self._max_rate - (time.monotonic() - reading_since))
            if writing is not None:
                await writing
                writing = None
        finally:
            if writing is not None:
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing

    def _plan(self, records: Sequence[RawRecord]) -> HistoryPlan:
        plan = plan_history(records, consumer=f"{REBUILD_CONSUMER}:{self.spec.job_id}")
        return plan.only_user(self.spec.user_id) if self.spec.user_id is not None else plan

    async def _write_bulk(self, generation: Generation, plan: HistoryPlan) -> None:
        await self._dead_letters(plan.dead_letters)
        async with self._pool.connection() as conn, conn.transaction():
            # Losing the last commits in a crash is harmless: the positions are lost with them.
            await conn.execute("SET LOCAL synchronous_commit = off")
            await self._postgres.write(conn, generation, plan, defer_erasures=True)
        await self._commit_offsets_soon()

    async def _write(self, generation: Generation, plan: HistoryPlan) -> None:
        """After the bulk load: rows and, for a generation that will serve, Redis too."""
        await self._dead_letters(plan.dead_letters)
        async with self._pool.connection() as conn, conn.transaction():
            erased = await self._postgres.write(conn, generation, plan)
        if self.spec.kind == "live":
            await self._recent.write(generation, plan.activities, erased, plan.erasures)
            async with self._pool.connection() as conn, conn.transaction():
                await raise_checkpoints(conn, generation.redis_checkpoint, plan.positions)

    async def _dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        async def send(letter: DeadLetter) -> Awaitable[object]:
            return await self._producer.send(
                DEAD_LETTERS.name, letter.value, key=letter.key, headers=list(letter.headers())
            )

        await publish_all(send, letters)

    async def _finish_bulk(self, generation: Generation) -> None:
        """Erasures applied to everything loaded; then the indexes (Postgres) and, for a generation that
        will serve, the Redis recent lists (mostly this process), side by side on the two cores."""
        async with self._pool.connection() as conn, conn.transaction():
            await self._postgres.apply_erasures(conn, generation)
        if self.spec.kind == "staging":
            return
        await self._phase(JobPhase.INDEXING)
        work = [build_indexes(self._pool, generation)]
        if self.spec.kind == "live":
            work.append(self._derive_recent(generation))
        await asyncio.gather(*work)

    async def _derive_recent(self, generation: Generation) -> None:
        """Each user's recent list from the loaded rows, in one pass, instead of one Redis write per event."""
        async with self._pool.connection() as conn, conn.transaction():
            # Everything up to here is in the rows this reads: the Redis checkpoint may say so.
            # The documents are built by Postgres, the same fields as `schemas.history.activity_document`
            # (tests compare the two): 100k documents cost this process next to nothing.
            cursor = await conn.execute(
                sql.SQL(
                    "SELECT user_id, event_id, (extract(epoch FROM occurred_at) * 1000)::bigint,"
                    " json_build_object('id', event_id, 'type', activity_type, 'category', category,"
                    " 'eventType', event_type, 'subject', subject, 'propertyId', property_id,"
                    " 'occurredAt', to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
                    " 'summary', summary, 'details', details)::text"
                    " FROM (SELECT a.*, row_number() OVER"
                    " (PARTITION BY user_id ORDER BY occurred_at DESC, event_id DESC) AS n"
                    " FROM {activities} a WHERE user_id IS NOT NULL) newest WHERE n <= %s"
                ).format(activities=generation.table("activities")),
                (RECENT_SIZE,),
            )
            newest: dict[str, list[tuple[str, int, bytes]]] = {}
            for user_id, event_id, score, document in await cursor.fetchall():
                newest.setdefault(user_id, []).append((event_id, score, document.encode()))
            erased = await conn.execute(sql.SQL("SELECT user_id FROM {t}").format(t=generation.table("erased_users")))
            erased_users = [row[0] for row in await erased.fetchall()]
            applied = await checkpoints(conn, generation.postgres_checkpoint)
        if self._resumed:
            # A previous run may have filled some lists already; these are built whole, from the rows.
            await delete_redis_keys(self._redis, generation.redis_prefix)
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in erased_users:
                pipe.set(tombstone_key(generation, user_id), b"1")
            await pipe.execute()
        await self._recent.load(generation, newest)
        async with self._pool.connection() as conn, conn.transaction():
            positions = [SourcePosition(t, p, o) for (t, p), o in applied.items()]
            await raise_checkpoints(conn, generation.redis_checkpoint, positions)

    async def _catch_up(self, consumer: AIOKafkaConsumer, generation: Generation) -> None:
        """Until every partition has been read to the head, as the head is when it gets there."""
        assert self.progress is not None
        while True:
            end = await consumer.end_offsets(list(consumer.assignment()))
            self.progress.target = dict(end)
            if all(self.progress.applied.get(tp, 0) >= offset for tp, offset in end.items()):
                return
            await self._load(consumer, generation, until=end, bulk=False)

    async def _catch_up_to(
        self, consumer: AIOKafkaConsumer, generation: Generation, applied_elsewhere: dict[tuple[str, int], int]
    ) -> None:
        """While the caller holds the pointer: read until this generation has applied at least what the
        live projection has (its checkpoint), bounded."""
        assert self.progress is not None
        deadline = time.monotonic() + SWAP_CATCH_UP_SECONDS
        while True:
            behind = {
                tp: offset + 1
                for tp in consumer.assignment()
                if (offset := applied_elsewhere.get((tp.topic, tp.partition), -1)) + 1
                > self.progress.applied.get(tp, 0)
            }
            if not behind:
                return
            if time.monotonic() > deadline:
                raise NotCaughtUp()
            end = await consumer.end_offsets(list(behind))
            await self._load(consumer, generation, until={tp: max(o, end[tp]) for tp, o in behind.items()}, bulk=False)

    # ---- the switch ----

    async def _swap(self, consumer: AIOKafkaConsumer, generation: Generation) -> None:
        old: Generation | None
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '20s'")
            old = await live_generation(conn, self.spec.namespace, "FOR UPDATE")
            if old is not None:
                await self._catch_up_to(consumer, generation, await checkpoints(conn, old.postgres_checkpoint))
                await point_to(conn, generation)
                await set_state(conn, old, "retired")
            else:
                await conn.execute(
                    "INSERT INTO user_history_live (namespace, generation) VALUES (%s, %s)",
                    (self.spec.namespace, generation.number),
                )
                await set_state(conn, generation, "live")
        log.info("history namespace %s: %s is live", self.spec.namespace, generation.schema)
        if old is not None:
            await self._drop(old)

    async def _merge_user(self, consumer: AIOKafkaConsumer, staging: Generation) -> None:
        """One user's rebuilt rows replace theirs in the live generation, in one transaction."""
        user_id = self.spec.user_id
        assert user_id is not None
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '20s'")
            live = await live_generation(conn, self.spec.namespace, "FOR UPDATE")
            if live is None:
                raise RuntimeError(f"history namespace {self.spec.namespace} has no live generation to merge into")
            await self._catch_up_to(consumer, staging, await checkpoints(conn, live.postgres_checkpoint))
            await _replace_user_rows(conn, live, staging, user_id)
            cursor = await conn.cursor(row_factory=dict_row).execute(
                sql.SQL(
                    "SELECT * FROM {t} WHERE user_id = %s ORDER BY occurred_at DESC, event_id DESC LIMIT %s"
                ).format(t=live.table("activities")),
                (user_id, RECENT_SIZE),
            )
            newest = await cursor.fetchall()
        await self._recent.replace(live, user_id, newest)
        await self._drop(staging)

    async def _publish_snapshot(self, snapshot: Generation) -> None:
        """Ready for reading, with every erasure made since it started (the live projection erases in
        ready snapshots from now on: the pointer lock orders the two)."""
        async with self._pool.connection() as conn, conn.transaction():
            live = await live_generation(conn, self.spec.namespace, "FOR UPDATE")
            if live is not None:
                await conn.execute(
                    sql.SQL("INSERT INTO {new} SELECT * FROM {old} ON CONFLICT DO NOTHING").format(
                        new=snapshot.table("erased_users"), old=live.table("erased_users")
                    )
                )
                await self._postgres.apply_erasures(conn, snapshot)
            await set_state(conn, snapshot, "ready")

    async def _drop(self, generation: Generation) -> None:
        for attempt in range(1, 4):
            try:
                await drop_generation(self._pool, self._redis, generation)
                return
            except Exception:
                log.exception(
                    "dropping %s failed (attempt %d); the replay worker retries at start", generation.schema, attempt
                )
                await asyncio.sleep(attempt)

    async def discard(self) -> None:
        """A failed job's generation, and the benchmark's candidate."""
        if self.generation is not None:
            async with self._pool.connection() as conn, conn.transaction():
                await set_state(conn, self.generation, "failed")
            await self._drop(self.generation)

    # ---- bookkeeping ----

    async def _commit_offsets_soon(self) -> None:
        now = time.monotonic()
        if now - self._last_report >= PROGRESS_EVERY_SECONDS and self._consumer is not None:
            await self._commit_offsets(self._consumer)

    async def _commit_offsets(self, consumer: AIOKafkaConsumer) -> None:
        """For Kafka's tools (`consumer-groups --describe` shows the rebuild's lag); never read back."""
        assert self.progress is not None
        try:
            await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in self.progress.applied.items()})
        except Exception as exc:
            log.warning("job %s: committing offsets failed (%s); progress is in Postgres", self.spec.job_id, exc)

    async def _phase(self, phase: str) -> None:
        assert self.progress is not None
        now = time.monotonic()
        log.info(
            "job %s: %s done in %.2fs (%d of %d events); now %s",
            self.spec.job_id,
            self.progress.phase,
            now - self._phase_started,
            self.progress.processed,
            self.progress.total,
            phase,
        )
        self._phase_started = now
        self.progress.phase = phase
        await self._report(force=True)

    async def _maybe_report(self) -> None:
        await self._report(force=False)

    async def _report(self, force: bool) -> None:
        now = time.monotonic()
        if force or now - self._last_report >= PROGRESS_EVERY_SECONDS:
            self._last_report = now
            assert self.progress is not None
            await self._report_to(self.progress, self.generation)


async def _replace_user_rows(conn: AsyncConnection[Any], live: Generation, staging: Generation, user_id: str) -> None:
    tables = {
        "live": live.table("activities"),
        "staged": staging.table("activities"),
        "live_owners": live.table("property_owners"),
        "staged_owners": staging.table("property_owners"),
        "live_erased": live.table("erased_users"),
        "staged_erased": staging.table("erased_users"),
    }
    updates = sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in ACTIVITY_COLUMNS)
    await conn.execute(sql.SQL("DELETE FROM {live} WHERE user_id = %s").format(**tables), (user_id,))
    await conn.execute(
        sql.SQL(
            "INSERT INTO {live} SELECT * FROM {staged} s WHERE s.user_id = %s ON CONFLICT (event_id) DO UPDATE SET {u}"
        ).format(u=updates, **tables),
        (user_id,),
    )
    await conn.execute(
        sql.SQL("INSERT INTO {live_owners} SELECT * FROM {staged_owners} ON CONFLICT DO NOTHING").format(**tables)
    )
    await conn.execute(
        sql.SQL("INSERT INTO {live_erased} SELECT * FROM {staged_erased} ON CONFLICT DO NOTHING").format(**tables)
    )
    if await _erased(conn, live, user_id):
        await PostgresHistorySink().forget(conn, live, [user_id])


async def _erased(conn: AsyncConnection[Any], generation: Generation, user_id: str) -> bool:
    cursor = await conn.execute(
        sql.SQL("SELECT 1 FROM {t} WHERE user_id = %s").format(t=generation.table("erased_users")), (user_id,)
    )
    return await cursor.fetchone() is not None
