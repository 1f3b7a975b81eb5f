"""A batch that fails for an unforeseen reason is retried, then dead-lettered whole, never lost; one that
Postgres refuses for good loses only the refused event, to the dead-letter topic."""

from dataclasses import dataclass

import psycopg

from streams.batches import apply_isolating_refusals
from streams.dead_letters import or_dead_letter
from streams.positions import RawRecord, SourcePosition


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list]] = []

    async def send_and_wait(self, topic, key, value, *, partition, timestamp, headers):
        self.sent.append((topic, key, value, headers))


class AppWithProducer:
    def __init__(self) -> None:
        self.producer = RecordingProducer()


RECORDS = [RawRecord(b"k", f"v{n}".encode(), SourcePosition("properties", 0, n)) for n in range(3)]


async def test_a_batch_that_keeps_failing_is_dead_lettered_with_the_error():
    app, calls = AppWithProducer(), []

    async def broken(records):
        calls.append(len(records))
        raise KeyError("surprise")

    await or_dead_letter(app, "property-projection", RECORDS, broken, attempts=2)
    assert calls == [3, 3]
    assert [value for _, _, value, _ in app.producer.sent] == [b"v0", b"v1", b"v2"]
    headers = dict(app.producer.sent[0][3])
    assert b"KeyError" in headers["dlq.error"] and headers["dlq.consumer"] == b"property-projection"


async def test_a_batch_that_succeeds_on_retry_is_not_dead_lettered():
    app, calls = AppWithProducer(), []

    async def flaky(records):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("once")

    await or_dead_letter(app, "event-archive", RECORDS, flaky)
    assert len(calls) == 2 and app.producer.sent == []


async def test_a_batch_postgres_refuses_is_applied_one_by_one_and_only_the_refused_event_is_dead_lettered():
    @dataclass(frozen=True)
    class Planned:
        change: str
        record: RawRecord

    planned = [Planned(f"row-{n}", record) for n, record in enumerate(RECORDS)]
    positions = [record.position for record in RECORDS]
    transactions: list[tuple[list[str], list[SourcePosition]]] = []
    letters: list[tuple[RawRecord, str]] = []

    async def apply(changes, at):
        transactions.append((list(changes), list(at)))
        if "row-1" in changes:
            raise psycopg.errors.NumericValueOutOfRange("bigint out of range")
        return [f"written {change}" for change in changes]

    async def dead_letter(record, error):
        letters.append((record, error))

    written = await apply_isolating_refusals("property", apply, planned, positions, dead_letter)
    assert written == ["written row-0", "written row-2"]
    assert [(record.value, "bigint out of range" in error) for record, error in letters] == [(b"v1", True)]
    # The whole batch, then each change at its own position, then every position (the refused one is handled).
    assert transactions == [
        (["row-0", "row-1", "row-2"], positions),
        (["row-0"], positions[:1]),
        (["row-1"], positions[1:2]),
        (["row-2"], positions[2:]),
        ([], positions),
    ]
