"""Helpers for tests of the property projection: build real events, produce them, await the stores."""

from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata, RecordMetadata

from schemas.codec import encode
from schemas.envelope import Envelope, new_event
from schemas.properties import (
    PROPERTY_CREATED,
    PROPERTY_DELETED,
    PROPERTY_IMAGES_ADDED,
    PROPERTY_UPDATED,
    PROPERTY_VIEWED,
)
from schemas.read_models import (
    PROPERTIES_OPENSEARCH_CHECKPOINT,
    PROPERTIES_POSTGRES_CHECKPOINT,
    PROPERTIES_REDIS_CHECKPOINT,
)
from schemas.topics import PROPERTIES, PROPERTY_VIEWS, by_name
from tests.support.processes import Projection, WorkerProcess


def listing(n: int = 0, **changes: Any) -> dict[str, Any]:
    return {
        "title": f"{2 + n % 3}BHK apartment in Gachibowli #{n}",
        "location": ["Gachibowli", "Kokapet", "Madhapur", "Kondapur"][n % 4],
        "price": 5_000_000 + n * 1000,
        "propertyType": "APARTMENT",
        "bedrooms": 2 + n % 3,
        "bathrooms": 2,
        "description": "Close to the financial district",
        "areaSqft": 1200 + n,
        "amenities": ["gym", "pool"],
        "latitude": 17.44,
        "longitude": 78.35,
        "attributes": {"facing": "east"},
        **changes,
    }


def image(n: int) -> dict[str, Any]:
    return {"url": f"/api/files/file-{n}", "sha256": f"{n:064x}", "contentType": "image/jpeg", "sizeBytes": 1000 + n}


def created(property_id: str, owner: str, run_id: str, n: int = 0, featured: bool = False, **changes: Any) -> Envelope:
    data = {"ownerId": owner, "listing": listing(n, **changes), "featured": featured}
    return _event(PROPERTY_CREATED, property_id, data, owner, run_id, 1)


def updated(
    property_id: str, owner: str, run_id: str, version: int, featured: bool = False, **changes: Any
) -> Envelope:
    data = {"listing": listing(**changes), "featured": featured, "changedFields": sorted(changes)}
    return _event(PROPERTY_UPDATED, property_id, data, owner, run_id, version)


def images_added(property_id: str, owner: str, run_id: str, version: int, count: int) -> Envelope:
    every = [image(i) for i in range(count)]
    return _event(PROPERTY_IMAGES_ADDED, property_id, {"added": every[-1:], "images": every}, owner, run_id, version)


def deleted(property_id: str, owner: str, run_id: str, version: int) -> Envelope:
    return _event(PROPERTY_DELETED, property_id, {"ownerId": owner}, owner, run_id, version)


def viewed(property_id: str, run_id: str) -> Envelope:
    return new_event(type=PROPERTY_VIEWED, subject=property_id, data={}, service="tests", correlationid=run_id)


def _event(event_type: str, subject: str, data: dict[str, Any], user: str, run_id: str, version: int) -> Envelope:
    return new_event(
        type=event_type,
        subject=subject,
        data=data,
        service="tests",
        userid=user,
        correlationid=run_id,
        sequence=version,
    )


async def produce(producer: AIOKafkaProducer, *events: Envelope) -> list[RecordMetadata]:
    """Property events to `properties`, views to `property-views`, keyed by the property id; in order."""
    sent = []
    for event in events:
        topic = PROPERTY_VIEWS.name if event.type == PROPERTY_VIEWED else PROPERTIES.name
        sent.append(await producer.send(topic, encode(event), key=event.subject.encode()))
    return [await future for future in sent]


async def start_group_at_end(bootstrap: str, group: str, topics: tuple[str, ...]) -> None:
    """Commit the topics' current end offsets for a fresh group, as Kafka's reset tool would: the worker
    under test then reads only what the test produces, not the whole history of the shared topics."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(by_name(t).partitions)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in ends.items()})
    finally:
        await consumer.stop()


# The two property projections as a test starts them, each under a group of the test's own.
PROPERTY_PROJECTION = Projection(
    "property-projection",
    "streams.properties.projection_worker",
    "HI_PROPERTY_PROJECTION_GROUP",
    (PROPERTIES.name, PROPERTY_VIEWS.name),
    {
        PROPERTIES.name: (PROPERTIES_POSTGRES_CHECKPOINT, PROPERTIES_REDIS_CHECKPOINT),
        PROPERTY_VIEWS.name: (PROPERTIES_POSTGRES_CHECKPOINT, PROPERTIES_REDIS_CHECKPOINT),
    },
)
# It reads `properties` only.
PROPERTY_SEARCH_PROJECTION = Projection(
    "property-search-projection",
    "streams.properties.search_worker",
    "HI_PROPERTY_SEARCH_PROJECTION_GROUP",
    (PROPERTIES.name,),
    {PROPERTIES.name: (PROPERTIES_OPENSEARCH_CHECKPOINT,)},
)


def projection_worker(group: str, log_dir: Path) -> WorkerProcess:
    """The Postgres + Redis projection under its own group."""
    return PROPERTY_PROJECTION.worker(group, log_dir)


def search_worker(group: str, log_dir: Path) -> WorkerProcess:
    """The OpenSearch projection under its own group."""
    return PROPERTY_SEARCH_PROJECTION.worker(group, log_dir)


async def checkpoint(pg: psycopg.AsyncConnection, projection: str, sent: RecordMetadata) -> int:
    cursor = await pg.execute(
        'SELECT "offset" FROM projection_checkpoints WHERE projection = %s AND topic = %s AND partition = %s',
        (projection, sent.topic, sent.partition),
    )
    row = await cursor.fetchone()
    return -1 if row is None else row[0]
