"""Benchmark: a blue/green rebuild of user history over 200,000 events, through the real job path.

    .venv/bin/python bench/replay.py [--events 200000] [--users 2000] [--compare-faust]

Needs the stack up (`make up`) and migrations applied. Produces a realistic mix of events (registrations,
logins, listings created/updated/delisted, images, views (a third anonymous), searches performed and
saved, file uploads) to five throw-away topics with six partitions each, then starts the history replay
worker (`python -m streams.history.replay_worker`, the process `make run` runs) in a namespace of its
own reading those topics, sends it a `history.rebuild.v1` command and follows the job in Postgres until
it completes: load, erasures, indexes, Redis recent lists, catch-up and swap. It prints the job's total
time (started -> finished, as recorded by the worker) and events/s over it, and the rate of the load
phase alone.

`--compare-faust` also runs the live Faust projection (`streams.history.projection_worker`) over the same
topics from the start, the path a Kafka consumer-groups reset takes, and prints its rate.

Cleans up the topics, the namespace's generations, jobs, checkpoints and Redis keys afterwards.
"""

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.admin import DeleteGroupsRequest
from redis.asyncio import Redis

from config import get_settings
from schemas.codec import encode
from schemas.envelope import Envelope, new_event
from schemas.history import REBUILD_HISTORY, RebuildHistory
from schemas.topics import USER_HISTORY_REPLAYS

ROOT = Path(__file__).resolve().parent.parent
LOCALITIES = ["Gachibowli", "Kokapet", "Madhapur", "Kondapur", "Hitech City", "Manikonda", "Kukatpally"]
KINDS = ("users", "properties", "property-views", "searches", "files")


def listing(rng: random.Random) -> dict[str, object]:
    bedrooms = rng.randint(1, 5)
    return {
        "title": f"{bedrooms}BHK apartment in {rng.choice(LOCALITIES)}",
        "location": rng.choice(LOCALITIES),
        "price": rng.randint(30, 400) * 100_000,
        "propertyType": rng.choice(["APARTMENT", "VILLA", "INDEPENDENT_HOUSE"]),
        "bedrooms": bedrooms,
        "bathrooms": max(1, bedrooms - 1),
        "amenities": ["gym", "pool"],
    }


def events(count: int, users: int, seed: int = 7) -> list[tuple[str, Envelope]]:
    """(kind, event) in a plausible order; each aggregate's events in sequence."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=90)
    step = timedelta(days=90) / count
    user_ids = [f"user-bench{n:05d}" for n in range(users)]
    properties: list[tuple[str, str, int]] = []  # id, owner, version
    out: list[tuple[str, Envelope]] = []
    for n, user in enumerate(user_ids):
        at = start + step * n
        data = {"email": "pii:v1:x", "name": "pii:v1:x", "phone": "pii:v1:x", "passwordHash": "pii:v1:x"}
        out.append(
            (
                "users",
                new_event(
                    type="user.registered.v1",
                    subject=user,
                    data=data,
                    service="bench",
                    userid=user,
                    sequence=1,
                    time=at,
                ),
            )
        )
    while len(out) < count:
        at = start + step * len(out)
        user = rng.choice(user_ids)
        roll = rng.random()
        if roll < 0.10:
            out.append(
                (
                    "users",
                    new_event(
                        type="user.logged_in.v1",
                        subject=user,
                        data={"method": "password"},
                        service="bench",
                        userid=user,
                        time=at,
                    ),
                )
            )
        elif roll < 0.20 or not properties:
            prop = f"prop-bench{uuid.uuid4().hex[:16]}"
            properties.append((prop, user, 1))
            data = {"ownerId": user, "listing": listing(rng), "featured": False}
            out.append(
                (
                    "properties",
                    new_event(
                        type="property.created.v1",
                        subject=prop,
                        data=data,
                        service="bench",
                        userid=user,
                        sequence=1,
                        time=at,
                    ),
                )
            )
        elif roll < 0.28:
            i = rng.randrange(len(properties))
            prop, owner, version = properties[i]
            properties[i] = (prop, owner, version + 1)
            data = {"listing": listing(rng), "featured": False, "changedFields": ["price"]}
            out.append(
                (
                    "properties",
                    new_event(
                        type="property.updated.v1",
                        subject=prop,
                        data=data,
                        service="bench",
                        userid=owner,
                        sequence=version + 1,
                        time=at,
                    ),
                )
            )
        elif roll < 0.31:
            i = rng.randrange(len(properties))
            prop, owner, version = properties[i]
            properties[i] = (prop, owner, version + 1)
            image = {"url": "/x", "sha256": "0" * 64, "contentType": "image/jpeg", "sizeBytes": 1000}
            out.append(
                (
                    "properties",
                    new_event(
                        type="property.images_added.v1",
                        subject=prop,
                        data={"added": [image], "images": [image]},
                        service="bench",
                        userid=owner,
                        sequence=version + 1,
                        time=at,
                    ),
                )
            )
        elif roll < 0.80:
            prop, _, _ = rng.choice(properties)
            viewer = user if rng.random() < 0.67 else None
            out.append(
                (
                    "property-views",
                    new_event(
                        type="property.viewed.v1",
                        subject=prop,
                        data={"viewerId": viewer} if viewer else {},
                        service="bench",
                        userid=viewer,
                        time=at,
                    ),
                )
            )
        elif roll < 0.93:
            data = {"userId": user, "query": rng.choice(LOCALITIES), "filters": {"bedrooms": 2}, "resultCount": 12}
            out.append(
                (
                    "searches",
                    new_event(
                        type="search.performed.v1", subject=user, data=data, service="bench", userid=user, time=at
                    ),
                )
            )
        elif roll < 0.96:
            saved = f"search-bench{uuid.uuid4().hex[:16]}"
            data = {"savedSearchId": saved, "ownerId": user, "name": "2BHK near work", "criteria": {"bedrooms": 2}}
            out.append(
                (
                    "searches",
                    new_event(type="search.saved.v1", subject=saved, data=data, service="bench", userid=user, time=at),
                )
            )
        else:
            file_id = f"file-bench{uuid.uuid4().hex[:16]}"
            data = {
                "fileId": file_id,
                "ownerId": user,
                "kind": "photo",
                "contentType": "image/jpeg",
                "sizeBytes": 120_000,
                "sha256": "0" * 64,
                "filename": "front.jpg",
            }
            out.append(
                (
                    "files",
                    new_event(
                        type="file.uploaded.v1", subject=file_id, data=data, service="bench", userid=user, time=at
                    ),
                )
            )
    return out[:count]


async def produce(topics: dict[str, str], batch: list[tuple[str, Envelope]], bootstrap: str) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for kind, event in batch:
            pending.append(await producer.send(topics[kind], encode(event), key=event.subject.encode()))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(batch) / (time.perf_counter() - started)


def worker(module: str, env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
    log = open(ROOT / ".state" / "logs" / log_name, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", module, "worker", "-l", "info"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def rebuild(namespace: str, topics: dict[str, str], count: int, dsn: str, bootstrap: str) -> dict[str, float]:
    env = {
        "HI_HISTORY_NAMESPACE": namespace,
        "HI_HISTORY_TOPICS": ",".join(topics.values()),
        "HI_HISTORY_REPLAY_GROUP": f"bench-replayer-{namespace}",
    }
    process = worker("streams.history.replay_worker", env, "bench-replay.log")
    job_id = f"job-{uuid.uuid4().hex}"
    try:
        # Its first generation exists once the worker is up; then the command.
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while conn.execute("SELECT 1 FROM user_history_live WHERE namespace = %s", (namespace,)).fetchone() is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the replay worker did not start; see .state/logs/bench-replay.log")
                await asyncio.sleep(0.2)
        command = RebuildHistory(job_id=job_id, namespace=namespace, requested_by="bench")
        envelope = new_event(type=REBUILD_HISTORY, subject=job_id, data=command.to_wire(), service="bench")
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(USER_HISTORY_REPLAYS.name, encode(envelope), key=job_id.encode())
        finally:
            await producer.stop()
        load_rate = None
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 900
            while True:
                row = conn.execute(
                    "SELECT state, events_processed, events_per_second, phase, started_at, finished_at, error"
                    " FROM user_history_replay_jobs WHERE job_id = %s",
                    (job_id,),
                ).fetchone()
                if row and row[0] in ("completed", "failed"):
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the replay worker stopped or stalled; see .state/logs/bench-replay.log")
                if row and row[3] == "loading":
                    load_rate = row[2]
                await asyncio.sleep(0.1)
            if row[0] == "failed":
                raise RuntimeError(f"rebuild failed: {row[6]}")
            rows = conn.execute(
                "SELECT count(*) FROM user_history_generations g JOIN user_history_live l USING (namespace, generation)"
                " WHERE g.namespace = %s",
                (namespace,),
            ).fetchone()
            assert rows and rows[0] == 1
            total = (row[5] - row[4]).total_seconds()
            return {"processed": row[1], "total_seconds": total, "rate": row[1] / total, "load_rate": load_rate or 0}
    finally:
        stop(process)


def faust_rate(namespace: str, topics: dict[str, str], count: int, dsn: str) -> float:
    env = {
        "HI_HISTORY_NAMESPACE": namespace,
        "HI_HISTORY_TOPICS": ",".join(topics.values()),
        "HI_HISTORY_GROUP": f"bench-history-live-{namespace}",
    }
    process = worker("streams.history.projection_worker", env, "bench-history-live.log")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 900
            first: float | None = None
            first_done = 0
            while True:
                row = conn.execute(
                    'SELECT coalesce(sum("offset" + 1), 0) FROM projection_checkpoints WHERE projection LIKE %s'
                    " AND projection LIKE '%%:redis' AND topic = ANY(%s)",
                    (f"user-history:{namespace}:%", list(topics.values())),
                ).fetchone()
                done = int(row[0]) if row else 0
                if done and first is None:
                    first, first_done = time.monotonic(), done
                if done >= count:
                    assert first is not None
                    return (count - first_done) / max(time.monotonic() - first, 1e-9)
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the live worker stopped or stalled; see .state/logs/bench-history-live.log")
                time.sleep(0.1)
    finally:
        stop(process)


async def cleanup(namespace: str, topics: dict[str, str], bootstrap: str, dsn: str, redis_url: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topics:
            await admin.delete_topics(list(topics.values()))
    finally:
        await admin.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        generations = conn.execute(
            "SELECT schema_name FROM user_history_generations WHERE namespace = %s", (namespace,)
        ).fetchall()
        for (schema,) in generations:
            conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(schema)))
        conn.execute("DELETE FROM user_history_live WHERE namespace = %s", (namespace,))
        conn.execute("DELETE FROM user_history_generations WHERE namespace = %s", (namespace,))
        conn.execute("DELETE FROM user_history_replay_jobs WHERE namespace = %s", (namespace,))
        conn.execute("DELETE FROM projection_checkpoints WHERE projection LIKE %s", (f"user-history%:{namespace}:%",))
        conn.execute(
            "DELETE FROM projection_checkpoints WHERE projection = %s", (f"user-history-replayer:{namespace}",)
        )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for group in (f"bench-replayer-{namespace}", f"bench-history-live-{namespace}"):
            try:
                coordinator = await admin.find_coordinator(group)
                await admin._send_request_to_node(coordinator, DeleteGroupsRequest([group]))
            except Exception as exc:
                print(f"(could not delete consumer group {group}: {exc})")
    finally:
        await admin.close()
    redis = Redis.from_url(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"history:{namespace}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await redis.unlink(*keys[start : start + 1000])
    finally:
        await redis.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--compare-faust", action="store_true")
    args = parser.parse_args()
    settings = get_settings()
    run = uuid.uuid4().hex[:8]
    namespace = f"bench{run}"
    topics = {kind: f"bench-history-{run}-{kind}" for kind in KINDS}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(name, num_partitions=6, replication_factor=1) for name in topics.values()])
    await admin.close()
    try:
        batch = events(args.events, args.users)
        produced = await produce(topics, batch, settings.kafka_bootstrap)
        result = await rebuild(namespace, topics, args.events, settings.postgres_dsn, settings.kafka_bootstrap)
        faust = None
        if args.compare_faust:
            faust = await asyncio.to_thread(faust_rate, f"{namespace}f", topics, args.events, settings.postgres_dsn)
    finally:
        await cleanup(namespace, topics, settings.kafka_bootstrap, settings.postgres_dsn, settings.redis_url)
        if args.compare_faust:
            await cleanup(f"{namespace}f", {}, settings.kafka_bootstrap, settings.postgres_dsn, settings.redis_url)
    print(f"events                          {args.events:>10,}")
    print(f"producer (acks=all)             {produced:>10,.0f} events/s")
    print(f"rebuild: events processed       {result['processed']:>10,}")
    print(f"rebuild: total time             {result['total_seconds']:>10.2f} s   (job started -> swapped, old dropped)")
    print(f"rebuild: events/s over the job  {result['rate']:>10,.0f}")
    print(f"rebuild: load phase             {result['load_rate']:>10,.0f} events/s")
    if faust is not None:
        print(f"live Faust projection           {faust:>10,.0f} events/s (the Kafka-reset path)")


if __name__ == "__main__":
    asyncio.run(main())
