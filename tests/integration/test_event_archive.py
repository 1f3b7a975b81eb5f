"""The archive worker against real Kafka and Postgres: every event lands once, poison goes to the DLQ."""

import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from schemas.codec import encode
from schemas.read_models import ARCHIVE_CHECKPOINT
from schemas.topics import (
    DEAD_LETTERS,
    DLQ_CONSUMER_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_SOURCE_OFFSET_HEADER,
    DLQ_SOURCE_PARTITION_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
)
from tests.support.archive import archive_worker, archived, archived_positions, marked_event, produce_marked
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    worker = archive_worker(f"event-archive-it-{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("logs"))
    worker.start()
    yield worker
    worker.stop()


async def test_events_of_every_topic_land_once_in_the_event_store(worker, producer, pg, run_id):
    produced = await produce_marked(producer, run_id, 250)
    assert await eventually(lambda: archived(pg, run_id), until=lambda rows: rows >= 250, within=60) == 250
    assert await archived_positions(pg, run_id) == produced
    ids = list(produced)
    cursor = await pg.execute(
        "SELECT event_id, event_type, source_topic, user_id, data->>'n' FROM event_store WHERE event_id = %s", (ids[1],)
    )
    assert await cursor.fetchone() == (ids[1], "search.saved.v1", "searches", f"user-{run_id}-1", "1")


async def test_the_archive_records_how_far_it_got_in_each_partition(worker, producer, pg, run_id):
    produced = await produce_marked(producer, f"{run_id}-cp", 30)
    await eventually(lambda: archived(pg, f"{run_id}-cp"), until=lambda rows: rows == 30, within=60)
    ours: dict[tuple[str, int], int] = {}
    for topic, partition, offset in produced.values():
        ours[(topic, partition)] = max(offset, ours.get((topic, partition), -1))
    cursor = await pg.execute(
        'SELECT topic, partition, "offset" FROM projection_checkpoints WHERE projection = %s', (ARCHIVE_CHECKPOINT,)
    )
    checkpoints = {(topic, partition): offset for topic, partition, offset in await cursor.fetchall()}
    # At least as far as this run's own events, which are archived: the checkpoint is raised with the rows.
    # Not "equal to the highest archived offset": a record whose event id is archived already (a reactor
    # restarted mid-batch produces its event again, or another stack's reactor on these topics answers the
    # same event) is passed over and still moves the checkpoint, and other workers write to these topics.
    assert {position: checkpoints.get(position, -1) >= offset for position, offset in ours.items()} == {
        position: True for position in ours
    }


async def test_a_malformed_message_goes_to_the_dead_letter_topic_and_the_archive_keeps_going(
    worker, producer, pg, settings, run_id
):
    dlq = AIOKafkaConsumer(
        DEAD_LETTERS.name, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="latest", group_id=None
    )
    await dlq.start()
    try:
        await dlq.seek_to_end()
        poison_key = f"file-poison-{run_id}".encode()
        poison = await (await producer.send("files", b'{"specversion": "1.0", "id": ', key=poison_key))
        after = marked_event("files", 1, f"{run_id}-after")
        await (await producer.send("files", encode(after), key=poison_key))

        async def next_dead_letter_for_our_key():
            batch = await dlq.getmany(timeout_ms=1000)
            # Other consumers of `properties` (the property projection) dead-letter it too: keep the archive's.
            return [
                m
                for messages in batch.values()
                for m in messages
                if m.key == poison_key and (DLQ_CONSUMER_HEADER, b"event-archive") in m.headers
            ]

        [letter] = await eventually(next_dead_letter_for_our_key, until=bool, within=60)
        headers = {k: v.decode() for k, v in letter.headers}
        assert letter.value == b'{"specversion": "1.0", "id": '
        assert "malformed JSON" in headers[DLQ_ERROR_HEADER]
        assert headers[DLQ_SOURCE_TOPIC_HEADER] == "files"
        assert headers[DLQ_SOURCE_PARTITION_HEADER] == str(poison.partition)
        assert headers[DLQ_SOURCE_OFFSET_HEADER] == str(poison.offset)
        # The same partition moves on past the poison message.
        assert await eventually(lambda: archived(pg, f"{run_id}-after"), until=lambda rows: rows == 1) == 1
    finally:
        await dlq.stop()
