# ruff: noqa: E402  (the project root goes on sys.path before the imports: tests.support is not installed)
"""Benchmark: notifications delivered per second end to end, request -> sent, to the local SMTP server.

    .venv/bin/python bench/notifications.py [--count 2000] [--api-count 1000] [--concurrency 32]

Needs the stack up (`make up`, `make prepare`). Starts what it measures itself
(tests/support/notifications.running_notification_slice): the local mailbox (aiosmtpd, writing .eml
files), the delivery reactor under a consumer group of its own, and the notification service on a
free port. Two runs:
  1. reactor: `count` `notification.requested.v1` events produced straight to `notifications` as
     fast as the producer goes; from the first request to the last `notification.sent.v1`.
  2. API: `api-count` `POST /api/notifications/email` (an admin to outside addresses) with
     `concurrency` requests in flight (aiohttp); from the first request to the last `sent`.
For each: delivered/s, and per notification the time from its request event to its sent event
(p50/p95/p99), and a check that the mailbox holds each message exactly once.
"""

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

THIS_FILE = Path(__file__).resolve()
ROOT = THIS_FILE.parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from config import get_settings
from ops.mailbox import read_mailbox
from schemas.codec import encode
from schemas.envelope import new_event
from schemas.ids import new_id
from schemas.notifications import Content, Kind, NotificationRequested, RequestedChannel
from schemas.topics import NOTIFICATIONS
from tests.support.notifications import bearer, notification_ends, running_notification_slice

LOG_DIR = ROOT / ".state" / "logs" / "bench-notifications"


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


async def watch_sent(bootstrap: str, since: dict[int, int], wanted: set[str], within: float) -> dict[str, float]:
    """notification id -> seconds from its request event to its sent event, until all are seen."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    requested: dict[str, float] = {}
    latency: dict[str, float] = {}
    try:
        partitions = [TopicPartition(NOTIFICATIONS.name, p) for p in range(NOTIFICATIONS.partitions)]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, since.get(tp.partition, 0))
        deadline = time.monotonic() + within
        while len(latency) < len(wanted) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for messages in batches.values():
                for message in messages:
                    key = message.key.decode() if message.key else ""
                    if key not in wanted:
                        continue
                    event = orjson.loads(message.value)
                    if event["type"] == "notification.requested.v1":
                        requested.setdefault(key, message.timestamp / 1000)
                    elif event["type"] == "notification.sent.v1" and key in requested:
                        latency.setdefault(key, message.timestamp / 1000 - requested[key])
    finally:
        await consumer.stop()
    return latency


def report(name: str, count: int, seconds: float, latency: dict[str, float], duplicates: int) -> None:
    values = list(latency.values())
    print(f"\n{name}")
    print(
        f"  delivered      {len(values)}/{count} in {seconds:.2f} s  ->  {len(values) / seconds:,.0f} notifications/s"
    )
    print(
        f"  request->sent  p50 {pct(values, 50) * 1000:,.0f} ms  p95 {pct(values, 95) * 1000:,.0f} ms"
        f"  p99 {pct(values, 99) * 1000:,.0f} ms"
    )
    print(f"  mailbox        each message exactly once: {'yes' if duplicates == 0 else f'NO, {duplicates} extra'}")


def mailbox_duplicates(directory: Path, ids: set[str]) -> tuple[int, int]:
    seen: dict[str, int] = {}
    for stored in read_mailbox(directory):
        notification = stored.message["X-Notification-Id"]
        if notification in ids:
            seen[notification] = seen.get(notification, 0) + 1
    return len(seen), sum(n - 1 for n in seen.values())


async def run_reactor(slice_, bootstrap: str, count: int) -> None:
    since = await notification_ends(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    ids: list[str] = []
    try:
        started = time.monotonic()
        futures = []
        for n in range(count):
            notification = new_id("notif")
            ids.append(notification)
            request = NotificationRequested(
                notification_id=notification,
                address=f"buyer.{n}@example.in",
                channel=RequestedChannel.EMAIL,
                kind=Kind.DIRECT,
                content=Content(subject=f"Site visit #{n}", text="Your visit to the Gachibowli flat is confirmed."),
            )
            event = new_event(
                type="notification.requested.v1", subject=notification, data=request.to_wire(), service="bench"
            )
            futures.append(await producer.send(NOTIFICATIONS.name, encode(event), key=notification.encode()))
        await asyncio.gather(*futures)
        produced = time.monotonic() - started
        latency = await watch_sent(bootstrap, since, set(ids), within=300)
        seconds = time.monotonic() - started
    finally:
        await producer.stop()
    print(f"\n(produced {count} requests in {produced:.2f} s)")
    delivered, duplicates = mailbox_duplicates(slice_.mailbox.directory, set(ids))
    report("1. reactor: requests produced to Kafka -> sent to SMTP", count, seconds, latency, duplicates)
    assert delivered == len(latency), (delivered, len(latency))


async def run_api(slice_, bootstrap: str, count: int, concurrency: int) -> None:
    since = await notification_ends(bootstrap)
    admin = bearer(f"user-bench-admin-{uuid.uuid4().hex[:8]}", "ADMIN")
    ids: list[str] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            body = {"to": f"lead.{n}@example.in", "subject": f"New launch #{n}", "text": "Tellapur, 3BHK."}
            async with session.post(f"{slice_.service.url}/api/notifications/email", json=body, headers=admin) as r:
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 202:
                    ids.append((await r.json())["data"]["id"])

    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    accepted = time.monotonic() - started
    latency = await watch_sent(bootstrap, since, set(ids), within=300)
    seconds = time.monotonic() - started
    print(f"\n(API accepted {statuses} in {accepted:.2f} s: {count / accepted:,.0f} req/s)")
    _, duplicates = mailbox_duplicates(slice_.mailbox.directory, set(ids))
    report(f"2. API: POST /api/notifications/email x{concurrency} -> sent to SMTP", count, seconds, latency, duplicates)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--api-count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    settings = get_settings()
    run_dir = LOG_DIR / uuid.uuid4().hex[:8]
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {"HI_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    async with running_notification_slice(run_dir, env, with_users=False, projection=False) as s:
        print(f"smtp connections {settings.smtp_connections}, dispatch batch {settings.notification_dispatch_batch}")
        await run_reactor(s, settings.kafka_bootstrap, args.count)
        await run_api(s, settings.kafka_bootstrap, args.api_count, args.concurrency)


if __name__ == "__main__":
    asyncio.run(main())
