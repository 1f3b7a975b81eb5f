"""Order per key across dead letters, the pure part: which events of a batch flow, which are parked
behind a dead one, and what the planner is given."""

from dataclasses import dataclass

import psycopg

from schemas.codec import encode
from streams.batches import apply_isolating_refusals
from streams.dead_letters import DeadLetter
from streams.parking import BatchOrder, plan_in_key_order
from streams.positions import RawRecord, SourcePosition
from streams.properties.projection import plan_properties
from tests.support.property_projection import created, updated


def at(offset: int, partition: int = 0) -> SourcePosition:
    return SourcePosition("properties", partition, offset)


def event(key: str, offset: int, version: int, partition: int = 0) -> RawRecord:
    envelope = created(key, "user-1", "run") if version == 1 else updated(key, "user-1", "run", version)
    return RawRecord(key.encode(), encode(envelope), at(offset, partition))


def poison(key: str, offset: int) -> RawRecord:
    return RawRecord(key.encode(), b'{"not": "an event"}', at(offset))


def test_a_key_with_a_parked_head_parks_what_comes_after_it_and_nothing_else():
    order = BatchOrder({"prop-k": at(10)})
    before, head, after, other = (
        event("prop-k", 9, 1),
        event("prop-k", 10, 2),
        event("prop-k", 11, 3),
        event("prop-j", 12, 1),
    )
    elsewhere = event("prop-k", 3, 4, partition=1)

    assert order.flowing([before, head, after, other, elsewhere]) == [before, head, other]
    parked = order.parked([before, head, after, other, elsewhere])
    assert [(p.record.position, p.dead, p.reason) for p in parked] == [
        (at(11), False, "parked behind properties[0]@10"),
        (at(3, 1), False, "parked behind properties[0]@10"),
    ]


def test_a_poison_event_parks_the_later_events_of_its_key_in_the_same_batch_and_the_planner_sees_the_rest():
    records = [
        event("prop-k", 0, 1),
        poison("prop-k", 1),
        event("prop-j", 2, 1),
        event("prop-k", 3, 3),
        event("prop-k", 4, 4),
        event("prop-j", 5, 2),
    ]
    order, planned = BatchOrder(), []

    def planner(some):
        planned.append([r.position.offset for r in some])
        return plan_properties(some)

    plan = plan_in_key_order(order, records, planner)

    assert planned == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 5]]
    assert [(c.change.property_id, c.change.version) for c in plan.changes] == [
        ("prop-k", 1),
        ("prop-j", 1),
        ("prop-j", 2),
    ]
    assert [letter.position.offset for letter in plan.dead_letters] == [1]
    # Checkpoints still pass every record: the parked ones are handled, they wait in Postgres.
    assert plan.positions == [r.position for r in records]
    parked = order.parked(records)
    assert [(p.record.position.offset, p.dead) for p in parked] == [(1, True), (3, False), (4, False)]
    assert parked[1].reason == "parked behind properties[0]@1" and parked[1].record.value == records[3].value


def test_a_batch_without_poison_is_planned_once_and_parks_nothing():
    records = [event("prop-k", 0, 1), event("prop-j", 1, 1)]
    calls = []

    def planner(some):
        calls.append(len(some))
        return plan_properties(some)

    plan = plan_in_key_order(BatchOrder(), records, planner)
    assert calls == [2] and len(plan.changes) == 2


def test_a_dead_letter_wins_over_an_earlier_hold_and_an_earlier_head_stays_the_head():
    order = BatchOrder()
    order.dead(DeadLetter(b"prop-k", b"x", "refused", at(5), "property-projection"))
    assert order.holds(event("prop-k", 6, 3))
    order.dead(DeadLetter(b"prop-k", b"y", "whole batch failed", at(6), "property-projection"))
    assert order.holds(event("prop-k", 7, 4))
    parked = order.parked([])
    assert [(p.record.position.offset, p.dead, p.reason) for p in parked] == [
        (5, True, "refused"),
        (6, True, "whole batch failed"),
        (7, False, "parked behind properties[0]@5"),
    ]


async def test_a_change_postgres_refuses_holds_back_the_later_changes_of_its_key_one_by_one():
    @dataclass(frozen=True)
    class Planned:
        change: str
        record: RawRecord

    records = [event("prop-k", 0, 2), event("prop-j", 1, 1), event("prop-k", 2, 3)]
    planned = [Planned(f"row-{n}", record) for n, record in enumerate(records)]
    order = BatchOrder()

    async def apply(changes, positions):
        if "row-0" in changes:
            raise psycopg.errors.CheckViolation("refused")
        return list(changes)

    async def dead_letter(record, error):
        order.dead(DeadLetter(record.key, record.value, error, record.position, "property-projection"))

    positions = [r.position for r in records]
    written = await apply_isolating_refusals("property", apply, planned, positions, dead_letter, order.holds)
    assert written == ["row-1"]
    assert [(p.record.position.offset, p.dead) for p in order.parked(records)] == [(0, True), (2, False)]
