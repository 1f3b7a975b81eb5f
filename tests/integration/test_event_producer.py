"""The services' producer against real Kafka: events land keyed by subject, as CloudEvents, at the
positions `publish` reports; with no broker, start() still succeeds and use answers 503."""

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from api.common.errors import ApiError, DependencyUnavailable
from api.common.kafka import EventProducer, Position, consistency_token, parse_consistency_token
from api.common.readiness import kafka_check, probe_all
from schemas.codec import decode
from schemas.envelope import new_event

pytestmark = pytest.mark.stack


@pytest.fixture
async def scratch_topic(settings) -> AsyncIterator[str]:
    """A throwaway topic: test events stay out of the system of record."""
    name = f"it-api-producer-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


@pytest.fixture
async def producer(settings) -> AsyncIterator[EventProducer]:
    producer = EventProducer(settings.kafka_bootstrap, client_id="it-api-producer")
    await producer.start()
    yield producer
    await producer.stop()


async def test_publish_reports_where_each_event_landed(producer, scratch_topic, settings):
    events = [
        new_event(type="property.viewed.v1", subject=f"prop-{i % 2}", data={"n": i}, service="property")
        for i in range(4)
    ]
    positions = [await producer.publish(scratch_topic, event) for event in events]

    consumer = AIOKafkaConsumer(
        scratch_topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        records = []
        while len(records) < len(events):
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "events did not arrive"
            records += [record for partition_records in batch.values() for record in partition_records]
    finally:
        await consumer.stop()

    landed = {decode(r.value).id: (r, Position(r.topic, r.partition, r.offset)) for r in records}
    for event, position in zip(events, positions, strict=True):
        record, where = landed[event.id]
        assert where == position
        assert record.key == event.subject.encode()
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
    # One key, one partition: per-aggregate order is the order of publishing.
    assert positions[0].partition == positions[2].partition and positions[0].offset < positions[2].offset
    highest_per_partition = {(p.topic, p.partition): p for p in sorted(positions)}
    assert parse_consistency_token(consistency_token(positions)) == sorted(highest_per_partition.values())
    assert await probe_all([kafka_check(producer)], within=settings.ready_timeout_seconds) == {"kafka": None}


async def test_without_a_broker_the_producer_starts_and_answers_503_on_use(unused_tcp_port):
    producer = EventProducer(f"127.0.0.1:{unused_tcp_port}", client_id="it-no-broker", connect_timeout=2)
    await producer.start()  # must not raise: the service starts and /ready says why
    try:
        with pytest.raises(DependencyUnavailable) as caught:
            await producer.publish("anything", new_event(type="x.y.v1", subject="s-1", data={}, service="t"))
        assert caught.value.status == 503 and caught.value.dependency == "kafka"
        assert await probe_all([kafka_check(producer)], within=3) == {"kafka": "not reachable"}
    finally:
        await producer.stop()


async def test_an_event_no_store_could_hold_is_refused_with_422_and_never_lands(producer, scratch_topic, settings):
    """Whatever door a NUL came in by (a content type the request guard does not parse, a form field), the
    codec refuses the event before it is produced: every projection would dead-letter it."""
    unstorable = new_event(type="search.saved.v1", subject="search-1", data={"name": "Kondapur\x00"}, service="t")
    with pytest.raises(ApiError) as refused:
        await producer.publish(scratch_topic, unstorable)
    assert refused.value.status == 422
    assert refused.value.errors == [{"field": "name", "message": "must not contain a NUL character (\\u0000)"}]
    after = await producer.publish(
        scratch_topic, new_event(type="search.saved.v1", subject="search-1", service="t", data={})
    )

    consumer = AIOKafkaConsumer(
        scratch_topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        records = []
        for _ in range(6):  # until the record the second publish reports arrives (the topic is fresh)
            batch = await consumer.getmany(timeout_ms=5000)
            records += [record for partition_records in batch.values() for record in partition_records]
            if any(r.offset == after.offset and r.partition == after.partition for r in records):
                break
    finally:
        await consumer.stop()
    assert [(r.partition, r.offset) for r in records] == [(after.partition, after.offset)]
