"""Helpers for tests of the event archive: produce marked events, count what landed, run the worker."""

import random
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaProducer

from schemas.codec import encode
from schemas.envelope import SOURCE_PREFIX, Envelope, new_event
from tests.support.processes import WorkerProcess

# Topics whose marked events no projection dead-letters: the archive treats every topic alike, so
# four of them lose no coverage. Reactors may still answer them (a `user.registered.v1` brings a
# welcome notification) with events of their own that carry the run's correlation id; those are
# archived too, rightly, and the counts below leave them out by their source.
_TYPES_BY_TOPIC = {
    "users": ("user", "user.registered.v1"),
    "searches": ("search", "search.saved.v1"),
    "notifications": ("notif", "notification.requested.v1"),
    "files": ("file", "file.uploaded.v1"),
}
ARCHIVE_TEST_TOPICS = tuple(_TYPES_BY_TOPIC)


def marked_event(topic: str, n: int, run_id: str) -> Envelope:
    """An event of the kind that topic carries, marked with the run as its correlation id."""
    prefix, event_type = _TYPES_BY_TOPIC[topic]
    return new_event(
        type=event_type,
        subject=f"{prefix}-{run_id}-{n % 500}",
        data={"n": n, "locality": random.choice(["Gachibowli", "Kokapet", "Madhapur", "Kondapur"])},
        service="tests",
        userid=f"user-{run_id}-{n % 50}",
        correlationid=run_id,
        sequence=n,
    )


# What produces the marked events (the `service` of `marked_event`), as the archive records it.
MARKED_SOURCE = f"{SOURCE_PREFIX}/tests"

Position = tuple[str, int, int]  # (topic, partition, offset)


async def produce_marked(producer: AIOKafkaProducer, run_id: str, count: int, start: int = 0) -> dict[str, Position]:
    """Spread `count` events over the archive test topics; returns where each event id landed, once the broker
    has them all."""
    futures = {}
    for n in range(start, start + count):
        topic = ARCHIVE_TEST_TOPICS[n % len(ARCHIVE_TEST_TOPICS)]
        event = marked_event(topic, n, run_id)
        futures[event.id] = await producer.send(topic, encode(event), key=event.subject.encode())
    landed = {}
    for event_id, future in futures.items():
        metadata = await future
        landed[event_id] = (metadata.topic, metadata.partition, metadata.offset)
    return landed


async def archived(pg: psycopg.AsyncConnection, run_id: str) -> int:
    """Rows archived for this run's marked events (not for what other workers derived from them)."""
    cursor = await pg.execute(
        "SELECT count(*) FROM event_store WHERE correlation_id = %s AND source = %s", (run_id, MARKED_SOURCE)
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def archived_positions(pg: psycopg.AsyncConnection, run_id: str) -> dict[str, Position]:
    """Where the archive says each of this run's events came from. The primary key already keeps an event
    id once; this is what it does not keep: that every event produced is there, nothing else is, and each
    row names the very record it was archived from."""
    cursor = await pg.execute(
        "SELECT event_id, source_topic, source_partition, source_offset FROM event_store"
        " WHERE correlation_id = %s AND source = %s",
        (run_id, MARKED_SOURCE),
    )
    return {event_id: (topic, partition, offset) for event_id, topic, partition, offset in await cursor.fetchall()}


def archive_worker(group: str, log_dir: Path, **env: str) -> WorkerProcess:
    return WorkerProcess("streams.archive", {"HI_ARCHIVE_GROUP": group, **env}, log_dir / f"{group}.log")
