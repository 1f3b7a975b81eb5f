"""A projection worker fed by the test and SIGKILLed mid-load: each under a consumer group of its own that
starts at the topics' ends (so it reads only what the test produces), started by its module command line
(`python -m <module> worker -l info`) the way an operator starts it. The events go out in waves; after a
chosen wave, once some of it (not all) is applied, every worker is killed and started again. Then the
test awaits each store's checkpoint past the last event sent, and compares the stores with what one
worker reading the same log makes of it."""

import asyncio
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from schemas.codec import encode
from schemas.envelope import Envelope
from tests.support.processes import Projection
from tests.support.property_projection import start_group_at_end
from tests.support.waiting import eventually

# (topic, event): keyed by the event's subject, as every producer of the platform keys them.
Produced = tuple[str, Envelope]


@dataclass
class LastSent:
    """The highest offset sent per (topic, partition)."""

    offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, sent: Sequence[RecordMetadata]) -> None:
        for record in sent:
            where = (record.topic, record.partition)
            self.offsets[where] = max(self.offsets.get(where, -1), record.offset)


@dataclass
class Run:
    events: int = 0
    kills: int = 0
    converged_seconds: float = 0.0  # from the last kill to every store past the last event


async def produce(producer: AIOKafkaProducer, events: Sequence[Produced]) -> list[RecordMetadata]:
    """In order, keyed by subject; every one acknowledged."""
    sending = [await producer.send(topic, encode(event), key=event.subject.encode()) for topic, event in events]
    return [await sent for sent in sending]


async def checkpoint(pg: psycopg.AsyncConnection, store: str, topic: str, partition: int) -> int:
    cursor = await pg.execute(
        'SELECT "offset" FROM projection_checkpoints WHERE projection = %s AND topic = %s AND partition = %s',
        (store, topic, partition),
    )
    row = await cursor.fetchone()
    return -1 if row is None else int(row[0])


def stores_of(projections: Sequence[Projection]) -> dict[str, tuple[str, ...]]:
    """Topic -> the checkpoints of every store the projections keep from it."""
    stores: dict[str, tuple[str, ...]] = {}
    for projection in projections:
        for topic, names in projection.stores.items():
            stores[topic] = (*stores.get(topic, ()), *names)
    return stores


async def await_checkpoints(
    pg: psycopg.AsyncConnection, last_sent: LastSent, stores: dict[str, tuple[str, ...]], within: float
) -> None:
    """Every store of every topic sent to has applied the last event sent to each partition."""
    for (topic, partition), offset in last_sent.offsets.items():
        for store in stores.get(topic, ()):
            await eventually(
                lambda s=store, t=topic, p=partition: checkpoint(pg, s, t, p),
                until=lambda applied, o=offset: applied >= o,
                within=within,
            )


async def committed(bootstrap: str, group: str, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's committed offsets (-1 where none): what its workers have finished with."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        found = {}
        for topic, partition in partitions:
            offset = await consumer.committed(TopicPartition(topic, partition))
            found[(topic, partition)] = -1 if offset is None else offset
        return found
    finally:
        await consumer.stop()


async def await_committed(
    bootstrap: str, group: str, last_sent: LastSent, topics: Sequence[str], within: float
) -> None:
    """The group itself is past the last event sent to each partition it reads. The stores' checkpoints
    are shared by every group of a projection on the stack (another test's may be running), so only
    this says that the workers under test applied the events: they commit a batch once it is written."""
    wanted = {where: offset + 1 for where, offset in last_sent.offsets.items() if where[0] in topics}
    await eventually(
        lambda: committed(bootstrap, group, list(wanted)),
        until=lambda found: all(found[where] >= offset for where, offset in wanted.items()),
        within=within,
    )


async def _some_applied(bootstrap: str, groups: Sequence[tuple[str, tuple[str, ...]]], wave: Sequence[RecordMetadata]):
    """Whether each group has finished with at least one event of the wave (past the first of one of its
    partitions): the kill that follows cuts the wave, not the gap after it."""
    first: dict[tuple[str, int], int] = {}
    for record in wave:
        where = (record.topic, record.partition)
        first[where] = min(first.get(where, record.offset), record.offset)
    for group, topics in groups:
        mine = {where: offset for where, offset in first.items() if where[0] in topics}
        if not mine:
            continue
        found = await committed(bootstrap, group, list(mine))
        if not any(found[where] > offset for where, offset in mine.items()):
            return False
    return True


async def run_killing(
    bootstrap: str,
    producer: AIOKafkaProducer,
    pg: psycopg.AsyncConnection,
    projections: Sequence[Projection],
    waves: Sequence[Sequence[Produced]],
    kill_after: set[int],
    log_dir: Path,
    within: float = 180,
    settle_after: frozenset[int] = frozenset(),
) -> Run:
    """Start each projection under a fresh group at the topics' ends, send the waves, kill every worker
    (random order, a moment apart) once some of each wave in `kill_after` is applied, then await every
    store past the last event. After a wave of `settle_after` every store is awaited before the next.
    The workers are stopped on the way out."""
    suffix = uuid.uuid4().hex[:8]
    workers = []
    groups = []
    for projection in projections:
        group = projection.group or f"{projection.name}-chaos-{suffix}"
        await start_group_at_end(bootstrap, group, projection.topics)
        workers.append(projection.worker(group, log_dir))
        groups.append((group, projection.topics))
    run = Run()
    last_sent = LastSent()
    killed_at = time.monotonic()
    for worker in workers:
        worker.start()
    try:
        for number, wave in enumerate(waves):
            sent = await produce(producer, wave)
            last_sent.add(sent)
            run.events += len(wave)
            if number in settle_after:
                # What later waves depend on (a saved search before the listings it matches) is applied.
                await await_checkpoints(pg, last_sent, stores_of(projections), within)
            if number in kill_after:
                await eventually(lambda s=sent: _some_applied(bootstrap, groups, s), bool, within=within)
                for worker in random.sample(workers, len(workers)):
                    await asyncio.sleep(random.uniform(0.0, 0.3))
                    worker.kill()
                    worker.start()
                run.kills += 1
                killed_at = time.monotonic()
        for group, topics in groups:
            await await_committed(bootstrap, group, last_sent, topics, within)
        await await_checkpoints(pg, last_sent, stores_of(projections), within)
        run.converged_seconds = time.monotonic() - killed_at
    finally:
        for worker in workers:
            worker.stop()
    return run
