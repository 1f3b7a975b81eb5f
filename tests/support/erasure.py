"""Everything the system holds, as bytes to search: a Postgres dump, every Redis key and value, every
OpenSearch document, and every message of every Kafka topic (keys, values, headers).

The erasure test looks for one person's email, phone and name in all of it. Kafka values are
CloudEvents JSON written by orjson, which never escapes ASCII: searching the raw bytes is searching the
decoded events.
"""

import glob
import os
import shutil
import subprocess

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from config.settings import Settings


def _pg_dump_binary() -> str:
    found = shutil.which("pg_dump") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))[-1:]), None)
    if found is None:
        raise RuntimeError("pg_dump not found: install postgresql-client (ops/stack.sh install does)")
    return found


def postgres_dump(settings: Settings) -> bytes:
    """`pg_dump` of the whole database, schema and data, as an operator's backup would hold it."""
    result = subprocess.run(
        [
            _pg_dump_binary(),
            "--host",
            settings.postgres_host,
            "--port",
            str(settings.postgres_port),
            "--username",
            settings.postgres_user,
            "--no-password",
            settings.postgres_db,
        ],
        env={**os.environ, "PGPASSWORD": settings.postgres_password.get_secret_value()},
        capture_output=True,
        check=True,
        timeout=300,
    )
    return result.stdout


async def redis_everything(settings: Settings) -> bytes:
    """Every key and its value, whatever the type."""
    redis = Redis.from_url(settings.redis_url)
    chunks: list[bytes] = []
    try:
        keys = [key async for key in redis.scan_iter(count=1000)]
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            async with redis.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.type(key)
                types = await pipe.execute()
            async with redis.pipeline(transaction=False) as pipe:
                for key, kind in zip(batch, types, strict=True):
                    match kind:
                        case b"string":
                            pipe.get(key)
                        case b"hash":
                            pipe.hgetall(key)
                        case b"list":
                            pipe.lrange(key, 0, -1)
                        case b"set":
                            pipe.smembers(key)
                        case b"zset":
                            pipe.zrange(key, 0, -1, withscores=True)
                        case b"stream":
                            pipe.xrange(key)
                        case _:
                            pipe.echo(b"")  # gone between SCAN and TYPE
                values = await pipe.execute(raise_on_error=False)
            for key, value in zip(batch, values, strict=True):
                chunks.append(key)
                chunks.append(repr(value).encode())
    finally:
        await redis.aclose()
    return b"\n".join(chunks)


async def opensearch_everything(settings: Settings) -> bytes:
    """Every document of every index (hidden and system ones aside), by scrolling."""
    chunks: list[bytes] = []
    async with httpx.AsyncClient(base_url=settings.opensearch_url, timeout=60) as client:
        await client.post("/_refresh")
        answer = await client.post("/*/_search?scroll=1m", json={"size": 1000, "query": {"match_all": {}}})
        answer.raise_for_status()
        while True:
            body = answer.json()
            hits = body["hits"]["hits"]
            if not hits:
                break
            chunks.append(answer.content)
            answer = await client.post("/_search/scroll", json={"scroll": "1m", "scroll_id": body["_scroll_id"]})
            answer.raise_for_status()
        await client.request("DELETE", "/_search/scroll", json={"scroll_id": body["_scroll_id"]})
    return b"\n".join(chunks)


async def kafka_everything(settings: Settings) -> bytes:
    """Every message of every topic on the broker (ours and Kafka's own), from the first offset to the end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(await admin.list_topics())
    finally:
        await admin.close()
    partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024
    )
    await consumer.start()
    chunks: list[bytes] = []
    try:
        ends = await consumer.end_offsets(partitions)
        todo = {tp for tp in partitions if ends[tp] > 0}
        consumer.assign(list(todo))
        if todo:
            await consumer.seek_to_beginning(*todo)
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=1000, max_records=10_000)
            for tp, messages in batches.items():
                for message in messages:
                    chunks.append(message.key or b"")
                    chunks.append(message.value or b"")
                    chunks.extend(value for _, value in message.headers or ())
                    if message.offset + 1 >= ends[tp]:
                        todo.discard(tp)
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)  # compacted or deleted records: nothing left below the end
    finally:
        await consumer.stop()
    return b"\n".join(chunks)
