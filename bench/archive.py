"""Benchmark: the event archive's throughput into Postgres next to a bare aiokafka consumer's on the same topic.

    .venv/bin/python bench/archive.py [--events 100000]

Needs the stack up (`make up`) and migrations applied. Produces N events to a throw-away topic with
the event topics' partition count, then measures, each from its first record to its last (so group
joins and process start-up are not counted):
  - a bare aiokafka consumer (no decoding, no writes): the ceiling for any consumer on this machine;
  - the archive worker (`python -m streams.archive`, its real code path: decode, validate, batch
    insert into `event_store`, checkpoint) reading only that topic under a fresh consumer group.
Cleans up the topic, its rows and the groups afterwards.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from config import get_settings
from schemas.codec import encode
from schemas.envelope import new_event
from schemas.topics import DEFAULT_PARTITIONS

ROOT = Path(__file__).resolve().parent.parent


async def produce(topic: str, count: int, bootstrap: str) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for n in range(count):
            event = new_event(
                type="property.viewed.v1",
                subject=f"prop-bench-{n % 2000}",
                data={"viewerId": f"user-{n % 300}", "locality": "Gachibowli", "n": n},
                service="bench",
                userid=f"user-{n % 300}",
            )
            pending.append(await producer.send(topic, encode(event), key=event.subject.encode()))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count / (time.perf_counter() - started)


async def bare_consumer_rate(topic: str, count: int, bootstrap: str) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    seen, first = 0, None
    try:
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            n = sum(len(messages) for messages in batch.values())
            if n and first is None:
                first = time.perf_counter()
            seen += n
        last = time.perf_counter()
    finally:
        await consumer.stop()
    assert first is not None
    return count / max(last - first, 1e-9)


def archive_rate(topic: str, count: int, dsn: str) -> float:
    group = f"bench-archive-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "HI_ARCHIVE_TOPICS": topic, "HI_ARCHIVE_GROUP": group}
    log = open(ROOT / ".state" / "logs" / "bench-archive.log", "ab")  # closed in finally
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.archive", "worker", "-l", "warn"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 600
            while True:
                row = conn.execute(
                    "SELECT count(*), min(archived_at), max(archived_at) FROM event_store WHERE source_topic = %s",
                    (topic,),
                ).fetchone()
                assert row is not None
                if row[0] >= count:
                    break
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"archive worker stopped or stalled at {row[0]} of {count}; see bench-archive.log"
                    )
                time.sleep(0.2)
            # archived_at is the transaction's start: the first batch's own duration is not in the span,
            # so count it by the rows of the first batch, measured the same way as the rest.
            first_batch = conn.execute(
                "SELECT count(*) FROM event_store WHERE source_topic = %s AND archived_at = %s", (topic, row[1])
            ).fetchone()
            assert first_batch is not None
            span = (row[2] - row[1]).total_seconds()
            return (count - first_batch[0]) / max(span, 1e-9)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()


async def cleanup(topic: str, bootstrap: str, dsn: str, groups: list[str] | None = None) -> None:
    """The bench's topic, its rows and the consumer groups named (None: every `bench-*` group)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        if groups is None:
            groups = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith("bench-")]
    finally:
        await admin.close()
    if groups:
        # aiokafka's admin client cannot delete groups; Kafka's own tool can.
        command = [str(ROOT / "ops" / "kafka-cli"), "consumer-groups", "--delete"]
        command += [arg for group in groups for arg in ("--group", group)]
        await asyncio.to_thread(subprocess.run, command, capture_output=True, check=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM event_store WHERE source_topic = %s", (topic,))
        conn.execute("DELETE FROM projection_checkpoints WHERE topic = %s", (topic,))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    settings = get_settings()
    topic = f"bench-archive-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=DEFAULT_PARTITIONS, replication_factor=1)])
    await admin.close()
    try:
        produced = await produce(topic, args.events, settings.kafka_bootstrap)
        bare = await bare_consumer_rate(topic, args.events, settings.kafka_bootstrap)
        archive = await asyncio.to_thread(archive_rate, topic, args.events, settings.postgres_dsn)
    finally:
        await cleanup(topic, settings.kafka_bootstrap, settings.postgres_dsn)
    print(f"events                     {args.events}")
    print(f"producer (acks=all)        {produced:>10,.0f} events/s")
    print(f"bare aiokafka consumer     {bare:>10,.0f} events/s")
    print(f"archive into postgres      {archive:>10,.0f} events/s")
    print(f"archive / bare consumer    {archive / bare:>10.1%}")


if __name__ == "__main__":
    asyncio.run(main())
