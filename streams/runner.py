"""The lean runner: each pure projection as a plain aiokafka consumer of its own group, no Faust.

A pure projection owns no Faust table: it reads batches of records and writes stores. Faust's
per-event machinery (its stream, processors and acks) was what such a worker spent its CPU on: about
7,700 events a second per process, against 26,000+ for a plain aiokafka batch consumer, and a Faust app
costs about 1 % of a core doing nothing. So a projection names itself as a `Projection` (its group,
topics, batch size and linger, and `open`, which opens its stores and answers the `Lane` its batches go
through) and `GroupRunner` runs it:

- one `AIOKafkaConsumer` per group: its own group id and offsets (a projection is replayed or reset
  alone, as before), no auto-commit, `earliest`, the session and heartbeat of `streams/app.py`;
- `getmany` batches of up to `batch_size`, lingering `batch_seconds` after the first record arrived
  (like `take_batches`; asleep in `getmany` while none arrive);
- the lane's work (a projector's `project`, through `KeyOrder.run` where the projection parks, or
  `or_dead_letter`), then the batch's offsets are committed: only after its sinks and checkpoints are
  written (at-least-once; the sinks are idempotent). A store that is down is waited for inside the
  work (`until_done`), so the partition stays put;
- a rebalance waits for the batch in flight (`ConsumerRebalanceListener`): it is written and committed
  before its partitions go to another member, which would otherwise apply it again;
- dead letters through the host's `AIOKafkaProducer` (acks=all), awaited before the batch commits.

`python -m streams.host <name> ...` runs several of them in one process (`streams/host.py`).
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from config import Settings
from streams.batches import until_done
from streams.checkpoints import highest_offsets
from streams.dead_letters import DeadLetter, or_dead_letter, publish_dead_letters
from streams.parking import KeyOrder, ParkingLot
from streams.positions import RawRecord, SourcePosition

log = logging.getLogger("streams.runner")

Work = Callable[[Sequence[RawRecord]], Awaitable[None]]
Publish = Callable[[Sequence[DeadLetter]], Awaitable[None]]

# While nothing arrives the consumer sleeps in `getmany` this long at a time (its fetches long-poll the
# broker meanwhile); a stop cancels the wait, so this bounds nothing but how often the loop turns.
IDLE_WAIT_MS = 60_000
# Faust's default (`broker_max_poll_interval`): a batch waiting out a store keeps its partitions this long.
MAX_POLL_INTERVAL_MS = 1_000_000
# How long the broker holds a fetch that finds nothing: it answers as soon as a record arrives, so this
# costs no latency, only how often an idle consumer asks again (aiokafka's 500 ms: twice a second for
# each of the host's groups).
FETCH_MAX_WAIT_MS = 5_000


@dataclass(frozen=True)
class Lane:
    """What a projection's batches go through: `handle` (which never raises for a batch's content: it
    dead-letters instead) and tasks that run beside it for as long as the group runs (the redrive of
    parked events)."""

    handle: Work
    beside: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()


@dataclass(frozen=True)
class Context:
    """What the runner gives a projection as it opens: settings, its group, where dead letters go and
    the partitions the group's consumer reads now."""

    settings: Settings
    group: str
    publish: Publish
    assigned: Callable[[], Collection[tuple[str, int]] | None] = lambda: None
    producer: Any = None  # the host's AIOKafkaProducer (acks=all), for a projection that produces events

    @contextlib.asynccontextmanager
    async def postgres(self) -> AsyncIterator[AsyncConnectionPool]:
        """A small pool of the projection's own, open for as long as the projection runs."""
        pool = AsyncConnectionPool(self.settings.postgres_dsn, min_size=1, max_size=2, open=False)
        # wait=False: a worker started while Postgres is down still starts, and its writes wait instead.
        await pool.open(wait=False)
        try:
            yield pool
        finally:
            await pool.close()

    @contextlib.asynccontextmanager
    async def redis(self) -> AsyncIterator[Redis]:
        redis = Redis.from_url(self.settings.redis_url)
        try:
            yield redis
        finally:
            await redis.aclose()

    def key_order(self, pool: AsyncConnectionPool, dead_letter_consumer: str) -> KeyOrder:
        """Parked under the group (so a test's group has rows of its own), dead letters carrying
        `dlq.consumer` = `dead_letter_consumer`."""
        return KeyOrder(ParkingLot(pool, self.group), self.publish, dead_letter_consumer)

    def in_key_order(self, order: KeyOrder, work: Work) -> Lane:
        """Each batch through `order`, and the redrives of this group's parked keys beside it."""

        async def handle(records: Sequence[RawRecord]) -> None:
            await order.run(records, work)

        async def redrive() -> None:
            await order.watch(self.assigned, work)

        return Lane(handle, [redrive])

    def or_dead_letter(self, consumer: str, work: Work, publish: Publish | None = None) -> Lane:
        """Each batch through `work`; one it fails on for good is dead-lettered (through `publish`, the
        host's producer unless the projection sends its own way)."""

        async def handle(records: Sequence[RawRecord]) -> None:
            await or_dead_letter(None, consumer, records, work, publish=publish or self.publish)

        return Lane(handle)


@dataclass(frozen=True)
class Projection:
    name: str  # what `python -m streams.host` and `make run` call it
    group: str
    topics: tuple[str, ...]
    batch_size: int
    batch_seconds: float
    open: Callable[[Context], AbstractAsyncContextManager[Lane]]


def record_of(message: object) -> RawRecord:
    """An aiokafka `ConsumerRecord` as the projections read it (Kafka's timestamp in seconds)."""
    timestamp = getattr(message, "timestamp", None)
    return RawRecord(
        getattr(message, "key", None),
        getattr(message, "value", None),
        SourcePosition(message.topic, message.partition, message.offset),  # type: ignore[attr-defined]
        None if timestamp is None or timestamp < 0 else timestamp / 1000,
    )


def next_offsets(records: Sequence[RawRecord]) -> dict[TopicPartition, int]:
    """What to commit after `records`: one past the highest offset of each partition."""
    highest = highest_offsets([record.position for record in records])
    return {TopicPartition(topic, partition): offset + 1 for (topic, partition), offset in highest.items()}


class _FinishBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: "GroupRunner") -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._runner.finish_in_flight()

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        log.info("%s: assigned %s", self._runner.projection.group, sorted((tp.topic, tp.partition) for tp in assigned))


class GroupRunner:
    """One projection's consumer group: batches in, lane, commit."""

    def __init__(self, projection: Projection, settings: Settings, publish: Publish, producer: Any = None) -> None:
        self.projection = projection
        self._settings = settings
        self._publish = publish
        self._producer = producer
        self._consumer: AIOKafkaConsumer | None = None
        self._in_flight: asyncio.Future[None] | None = None
        self.revocations = 0  # how often a rebalance took partitions away (a test waits on it)

    def assigned(self) -> set[tuple[str, int]] | None:
        """The partitions this member reads now: only the member that reads a key redrives it."""
        if self._consumer is None:
            return None
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    async def finish_in_flight(self) -> None:
        """Until the batch being handled is written and committed (a rebalance waits for it)."""
        self.revocations += 1
        task = self._in_flight
        if task is not None and not task.done():
            log.info("%s: partitions revoked; finishing the batch in flight first", self.projection.group)
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    def _new_consumer(self) -> AIOKafkaConsumer:
        session = self._settings.streams_session_timeout_seconds
        return AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=self.projection.group,
            client_id=self.projection.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(session * 1000),
            heartbeat_interval_ms=int(session * 1000 / 5),
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            max_poll_records=self.projection.batch_size,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )

    async def run(self) -> None:
        consumer = self._new_consumer()
        consumer.subscribe(list(self.projection.topics), listener=_FinishBeforeRevoke(self))
        # A worker started while Kafka is away still starts: it keeps trying.
        await until_done(f"{self.projection.group} consumer", consumer.start, (KafkaError,))
        self._consumer = consumer
        context = Context(self._settings, self.projection.group, self._publish, self.assigned, self._producer)
        try:
            async with self.projection.open(context) as lane:
                beside = [asyncio.create_task(task()) for task in lane.beside]
                try:
                    await self._consume(consumer, lane)
                finally:
                    for task in beside:
                        task.cancel()
                    await asyncio.gather(*beside, return_exceptions=True)
        finally:
            self._consumer = None
            await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer, lane: Lane) -> None:
        async for records in self.batches(consumer):
            task = asyncio.ensure_future(self._handle(consumer, lane, records))
            self._in_flight = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                # Stopping: the batch is written and committed first (a SIGKILL is what skips this).
                await task
                raise
            finally:
                self._in_flight = None

    async def batches(self, consumer: AIOKafkaConsumer) -> AsyncIterator[list[RawRecord]]:
        loop = asyncio.get_running_loop()
        size, within = self.projection.batch_size, self.projection.batch_seconds
        while True:
            records = _records(await consumer.getmany(timeout_ms=IDLE_WAIT_MS, max_records=size))
            if not records:
                continue
            deadline = loop.time() + within
            while len(records) < size and (left := deadline - loop.time()) > 0:
                more = await consumer.getmany(timeout_ms=max(1, int(left * 1000)), max_records=size - len(records))
                records += _records(more)
            yield records

    async def _handle(self, consumer: AIOKafkaConsumer, lane: Lane, records: list[RawRecord]) -> None:
        await lane.handle(records)
        try:
            await consumer.commit(next_offsets(records))
        except (CommitFailedError, IllegalStateError) as exc:
            # Its partitions went to another member meanwhile, which reads the batch again: harmless,
            # the sinks are idempotent.
            log.warning("%s: batch of %d not committed (%s)", self.projection.group, len(records), exc)
        except KafkaError as exc:
            group, kind = self.projection.group, type(exc).__name__
            log.warning("%s: batch of %d not committed (%s: %s)", group, len(records), kind, exc)


def _records(fetched: dict[TopicPartition, list[object]]) -> list[RawRecord]:
    return [record_of(message) for messages in fetched.values() for message in messages]


def dead_letter_producer(settings: Settings) -> AIOKafkaProducer:
    """The host's producer, shared by its groups: dead letters are safe (acks=all) before a batch commits."""
    return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", client_id="projection-host")


async def start_producer(producer: AIOKafkaProducer) -> Publish:
    await until_done("dead-letter producer", producer.start, (KafkaError,))

    async def publish(letters: Sequence[DeadLetter]) -> None:
        await publish_dead_letters(producer, letters)

    return publish
