"""The lean runner (streams/runner.py) against the real broker: a group of the test's own on a topic of
the test's own, with a lane that keeps what it is handed and holds a batch for as long as the test says.

- every record reaches the lane once, in order per partition, as its key, value and position;
- a batch is committed only once its lane has returned (at-least-once: a kill before that redelivers it);
- a rebalance waits for the batch in flight: it is written and committed before its partitions move, so
  the member that takes them over does not apply it again.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.positions import RawRecord
from streams.runner import Context, GroupRunner, Lane, Projection
from tests.support.waiting import eventually

pytestmark = pytest.mark.stack

PARTITIONS = 3


class Kept:
    """The lane: keeps each batch; while `hold` is clear, the batch it is handed waits."""

    def __init__(self) -> None:
        self.batches: list[list[RawRecord]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.entered = 0

    async def handle(self, records: Sequence[RawRecord]) -> None:
        self.entered += 1
        await self.hold.wait()
        self.batches.append(list(records))

    @property
    def records(self) -> list[RawRecord]:
        return [record for batch in self.batches for record in batch]


@pytest.fixture
async def topic(settings) -> AsyncIterator[str]:
    name = f"runner-test-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_consumer_groups([name])
        await admin.delete_topics([name])
        await admin.close()


def projection(topic: str, kept: Kept) -> Projection:
    @contextlib.asynccontextmanager
    async def open_(context: Context) -> AsyncIterator[Lane]:
        yield Lane(kept.handle)

    return Projection("runner-test", topic, (topic,), batch_size=50, batch_seconds=0.02, open=open_)


async def nowhere(letters) -> None:
    raise AssertionError(f"nothing here is dead-lettered: {letters}")


async def produce(settings, topic: str, count: int, prefix: str = "") -> list[tuple[bytes, bytes]]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    sent = [(f"key-{n % 7}".encode(), f"{prefix}value-{n}".encode()) for n in range(count)]
    try:
        # Sent together, so they arrive together: the batch the runner takes spans every partition.
        acked = [await producer.send(topic, value, key=key) for key, value in sent]
        await asyncio.gather(*acked)
    finally:
        await producer.stop()
    return sent


async def committed(settings, group: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()}


@contextlib.asynccontextmanager
async def running(runner: GroupRunner, kept: Kept) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        kept.hold.set()  # a stopping runner finishes its batch in flight first
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def per_partition(records: Sequence[RawRecord]) -> dict[int, list[int]]:
    offsets: dict[int, list[int]] = {}
    for record in records:
        offsets.setdefault(record.position.partition, []).append(record.position.offset)
    return offsets


async def test_every_record_reaches_the_lane_once_in_order_and_is_committed_after_it(settings, topic):
    kept = Kept()
    kept.hold.clear()
    sent = await produce(settings, topic, 120)
    runner = GroupRunner(projection(topic, kept), settings, nowhere)
    async with running(runner, kept):

        async def entered() -> int:
            return kept.entered

        await eventually(entered, lambda n: n >= 1, within=30)
        # The first batch is being handled: nothing of it is committed yet.
        assert await committed(settings, topic) == {}
        kept.hold.set()

        async def handled() -> list[RawRecord]:
            return kept.records

        records = await eventually(handled, lambda got: len(got) >= len(sent), within=30)

        async def offsets() -> dict[int, int]:
            return await committed(settings, topic)

        ends = {p: max(offsets) + 1 for p, offsets in per_partition(records).items()}
        assert await eventually(offsets, lambda got: got == ends, within=30) == ends
    assert sorted((r.key, r.value) for r in records) == sorted(sent)
    assert all(offsets == sorted(set(offsets)) for offsets in per_partition(records).values())
    assert all(record.timestamp is not None for record in records)


async def test_a_rebalance_waits_for_the_batch_in_flight(settings, topic):
    first, second = Kept(), Kept()
    sent = await produce(settings, topic, 60, prefix="early-")
    runner = GroupRunner(projection(topic, first), settings, nowhere)
    async with running(runner, first):

        async def handled_first() -> int:
            return len(first.records)

        await eventually(handled_first, lambda n: n >= len(sent), within=30)
        busy = first.entered + 1
        first.hold.clear()
        sent += await produce(settings, topic, 60, prefix="late-")

        async def entered() -> int:
            return first.entered

        await eventually(entered, lambda n: n >= busy, within=30)
        # A second member joins while the first holds a batch: the group rebalances, and the first's
        # partitions are revoked only once its batch is done.
        joining = GroupRunner(projection(topic, second), settings, nowhere)
        async with running(joining, second):

            async def revocations() -> int:
                return runner.revocations

            await eventually(revocations, lambda n: n >= 1, within=30)

            async def second_reads() -> set[tuple[str, int]] | None:
                return joining.assigned()

            # What the rebalance must not do is hand the second member partitions while the first still
            # holds a batch of them: a negative, so it is watched for a while (the group would settle in
            # well under a second without the wait: the first member rejoins at once).
            with contextlib.suppress(AssertionError):
                await eventually(second_reads, lambda got: bool(got), within=5, every=0.1)
            assert not joining.assigned(), "partitions moved while their batch was in flight"
            first.hold.set()
            await eventually(second_reads, lambda got: bool(got), within=60)
            sent += await produce(settings, topic, 60, prefix="after-")

            async def everything() -> list[RawRecord]:
                return first.records + second.records

            await eventually(everything, lambda got: len({(r.key, r.value) for r in got}) >= len(sent), within=60)
    assert second.records, "the second member read its partitions"
    handled = [(r.position.partition, r.position.offset) for r in first.records + second.records]
    assert len(handled) == len(set(handled)), "a batch in flight was handled again after the rebalance"
