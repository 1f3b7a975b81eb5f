"""The loop every parking projection shares (`streams.parking.KeyOrder`) against real Postgres and Kafka,
with a projection of the test's own: a redelivered batch parks nothing twice, a parked key stays
parked across batches while the others flow, and a redrive applies the key's events in the order they
were read, once."""

import uuid
from dataclasses import dataclass, field

import pytest
from psycopg_pool import AsyncConnectionPool

from schemas.topics import DEAD_LETTERS
from streams.dead_letters import DeadLetter
from streams.parking import KeyOrder, ParkingLot
from streams.positions import RawRecord, SourcePosition


@dataclass(frozen=True)
class Plan:
    changes: list[RawRecord]
    dead_letters: list[DeadLetter]
    positions: list[SourcePosition] = field(default_factory=list)


class Projection:
    """Applies every record it can read to a list; `b"poison"` it cannot read until `fixed`."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.applied: list[int] = []
        self.fixed = False
        self.order: KeyOrder

    def plan(self, records):
        dead = [r for r in records if r.value == b"poison" and not self.fixed]
        letters = [DeadLetter(r.key, r.value, "cannot read it", r.position, self.consumer) for r in dead]
        return Plan([r for r in records if r not in dead], letters, [r.position for r in records])

    async def work(self, records):
        plan = self.order.plan(records, self.plan)
        await self.order.dead_letters(plan.dead_letters)
        self.applied += [r.position.offset for r in plan.changes]


def record(key: str, offset: int, value: bytes = b"event") -> RawRecord:
    return RawRecord(key.encode(), value, SourcePosition("properties", 3, offset))


@pytest.fixture
async def projection(settings, producer):
    consumer = f"parking-lot-it-{uuid.uuid4().hex[:8]}"
    projection = Projection(consumer)

    async def publish(letters):
        for letter in letters:
            await producer.send_and_wait(
                DEAD_LETTERS.name, letter.value, key=letter.key, headers=list(letter.headers())
            )

    async with AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=2) as pool:
        projection.order = KeyOrder(ParkingLot(pool, consumer), publish, consumer)
        yield projection
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM parked_events WHERE consumer = %s", (consumer,))


async def parked(pg, consumer):
    cursor = await pg.execute(
        'SELECT key, "offset", dead, reason FROM parked_events WHERE consumer = %s ORDER BY seq', (consumer,)
    )
    return await cursor.fetchall()


async def test_parked_keys_wait_across_batches_and_a_redrive_applies_them_in_order_once(projection, pg):
    order, consumer = projection.order, projection.consumer
    batch = [record("prop-k", 0), record("prop-k", 1, b"poison"), record("prop-j", 2), record("prop-k", 3)]
    await order.run(batch, projection.work)
    assert projection.applied == [0, 2]
    expected = [
        ("prop-k", 1, True, "cannot read it"),
        ("prop-k", 3, False, "parked behind properties[3]@1"),
    ]
    assert await parked(pg, consumer) == expected

    # Redelivered after a kill: the same decisions onto the same rows, nothing parked twice.
    projection.applied.clear()
    await order.run(batch, projection.work)
    assert projection.applied == [0, 2]
    assert await parked(pg, consumer) == expected

    # A later batch: the key stays parked, the other flows.
    projection.applied.clear()
    await order.run([record("prop-k", 4), record("prop-j", 5)], projection.work)
    assert projection.applied == [5]
    assert [offset for _, offset, _, _ in await parked(pg, consumer)] == [1, 3, 4]

    # Not asked for: a redrive does nothing.
    assert await order.redrive(None, projection.work) == 0
    projection.fixed = True
    await pg.execute("UPDATE parked_events SET redrive_requested_at = now() WHERE consumer = %s", (consumer,))
    projection.applied.clear()
    assert await order.redrive(None, projection.work) == 3
    assert projection.applied == [1, 3, 4]
    assert await parked(pg, consumer) == []
    assert await order.redrive(None, projection.work) == 0

    projection.applied.clear()
    await order.run([record("prop-k", 6)], projection.work)
    assert projection.applied == [6]


async def test_a_redrive_that_fails_again_keeps_the_key_parked_behind_the_same_event(projection, pg):
    order, consumer = projection.order, projection.consumer
    await order.run([record("prop-k", 10, b"poison"), record("prop-k", 11)], projection.work)
    await pg.execute("UPDATE parked_events SET redrive_requested_at = now() WHERE consumer = %s", (consumer,))
    assert await order.redrive(None, projection.work) == 0
    cursor = await pg.execute(
        'SELECT "offset", dead, redrive_requested_at IS NULL FROM parked_events WHERE consumer = %s ORDER BY seq',
        (consumer,),
    )
    assert await cursor.fetchall() == [(10, True, True), (11, False, True)]
    assert projection.applied == []


async def test_a_redrive_takes_only_the_partitions_this_worker_reads(projection, pg):
    order, consumer = projection.order, projection.consumer
    await order.run([record("prop-k", 20, b"poison"), record("prop-k", 21)], projection.work)
    projection.fixed = True
    await pg.execute("UPDATE parked_events SET redrive_requested_at = now() WHERE consumer = %s", (consumer,))
    assert await order.redrive({("properties", 0)}, projection.work) == 0
    assert await order.redrive({("properties", 3)}, projection.work) == 2
    assert projection.applied == [20, 21]
