"""A batch that fails for an unforeseen reason is retried, then dead-lettered whole, never lost."""

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
