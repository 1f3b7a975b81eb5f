"""`take_batches`, the batching every agent uses: records in, batches out, no broker. A batch holds at
most its size, and every record is handed over exactly once and in order."""

from typing import Any

import faust

from streams.batches import take_batches
from streams.positions import RawRecord, SourcePosition
from tests.support.topology import put_records, running
from tests.support.waiting import eventually

app = faust.App("test-take-batches", store="memory://", autodiscover=False, web_enabled=False)
topic = app.topic("take-batches", key_serializer="raw", value_serializer="raw")
taken: list[list[int]] = []


@app.agent(topic)
async def take(stream: faust.StreamT[Any]) -> None:
    async for events in take_batches(stream, 2, within=0.05):
        taken.append([event.message.offset for event in events])


def _records(offsets: range) -> list[RawRecord]:
    return [RawRecord(b"k", b"v%d" % n, SourcePosition("take-batches", 0, n)) for n in offsets]


async def test_batches_hold_at_most_their_size_and_every_record_once_in_order() -> None:
    taken.clear()
    async with running(take) as (agent, _):
        await put_records(agent, _records(range(5)))

        async def handed() -> int:
            return sum(map(len, taken))

        await eventually(handed, lambda count: count == 5)
    assert all(1 <= len(batch) <= 2 for batch in taken)
    assert [offset for batch in taken for offset in batch] == [0, 1, 2, 3, 4]
