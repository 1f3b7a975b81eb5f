# ruff: noqa: E402  (the project root goes on sys.path before the imports: bench.archive is imported)
"""Benchmark: one projection (the event archive) run as 1, 2 and 3 worker processes in one consumer group.

    .venv/bin/python bench/scale.py [--events 50000] [--partitions 12] [--workers 1,2,3]

Needs the stack up (`make up`) and migrations applied. Produces N events once to a throw-away topic of
its own with enough partitions for every worker, then for each worker count empties the topic's rows
from `event_store`, starts that many `python -m streams.archive` processes (the real code path: decode,
validate, batch insert, checkpoint) under one fresh group reading only that topic, and reports:
  - events/s from the first archived batch to the last (group joins and process start-up not counted);
  - CPU ms per event summed over the workers (user + system, /proc, sampled at the first archived row
    and at the last, over the rows archived between);
  - each worker's partitions as the group coordinator assigned them (shows the work is shared).
Postgres, Kafka and the workers share this machine's cores, so on 2 cores expect throughput to stay
flat as workers are added: the figure that carries to a bigger machine is the CPU per event.
Cleans up the topic, its rows and the groups afterwards.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/scale.py`

import psycopg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from bench.archive import cleanup, produce
from config import get_settings

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    workers: int
    events: int
    rate: float
    cpu_ms_per_event: float
    assignment: list[list[int]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def assignment(group: str, bootstrap: str) -> list[list[int]]:
    """Each member's partitions, as the coordinator handed them out; none while the group rebalances."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members = []
    for described in response.groups:
        if described[2] != "Stable":  # (error, group, state, protocol type, protocol, members)
            return []
        for member in described[5]:
            if not member[-1]:
                return []
            decoded = ConsumerProtocolMemberAssignment.decode(member[-1])
            members.append(sorted(p for _, partitions in decoded.assignment for p in partitions))
    return sorted(members)


def archived(conn: psycopg.Connection, topic: str) -> tuple[int, object, object]:
    row = conn.execute(
        "SELECT count(*), min(archived_at), max(archived_at) FROM event_store WHERE source_topic = %s", (topic,)
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1], row[2]


def run(workers: int, group: str, topic: str, count: int, dsn: str, bootstrap: str) -> Run:
    # Faust keeps a data directory per app in its working directory: a temporary one, not the checkout.
    scratch = tempfile.TemporaryDirectory(prefix="bench-scale-")
    pythonpath = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "HI_ARCHIVE_TOPICS": topic, "HI_ARCHIVE_GROUP": group, "PYTHONPATH": pythonpath}
    logs = ROOT / ".state" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM event_store WHERE source_topic = %s", (topic,))
        log = open(logs / "bench-scale.log", "ab")  # closed in finally
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "streams.archive", "worker", "-l", "warn"],
                cwd=scratch.name,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for _ in range(workers)
        ]
        try:
            deadline = time.monotonic() + 900
            cpu_start: float | None = None
            rows_start = 0
            members: list[list[int]] = []
            while True:
                rows, first, last = archived(conn, topic)
                if rows and cpu_start is None:
                    cpu_start, rows_start = sum(cpu_seconds(p.pid) for p in processes), rows
                if rows and not members:
                    # While every worker is alive and in the group; a group still settling is asked again.
                    members = asyncio.run(assignment(group, bootstrap))
                    if len(members) != workers:
                        members = []
                if rows >= count:
                    cpu_end = sum(cpu_seconds(p.pid) for p in processes)
                    break
                if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
                    raise RuntimeError(f"a worker stopped or the run stalled at {rows} of {count}; see bench-scale.log")
                time.sleep(0.2)
            if not members:
                members = asyncio.run(assignment(group, bootstrap))
            # archived_at is each transaction's start: the first batch's own duration is not in the span,
            # so its rows are left out of the rate.
            first_batch = conn.execute(
                "SELECT count(*) FROM event_store WHERE source_topic = %s AND archived_at = %s", (topic, first)
            ).fetchone()
            assert first_batch is not None and cpu_start is not None
            span = (last - first).total_seconds()  # type: ignore[operator]
            return Run(
                workers=workers,
                events=count,
                rate=(count - first_batch[0]) / max(span, 1e-9),
                cpu_ms_per_event=1000 * (cpu_end - cpu_start) / max(count - rows_start, 1),
                assignment=members,
            )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:  # a loaded machine can hold a graceful stop past a minute
                    process.kill()
                    process.wait()
            log.close()
            scratch.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--workers", default="1,2,3", help="worker counts to run, comma-separated")
    args = parser.parse_args()
    settings = get_settings()
    topic = f"bench-scale-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=args.partitions, replication_factor=1)])
    await admin.close()
    groups: list[str] = []
    try:
        produced = await produce(topic, args.events, settings.kafka_bootstrap)
        print(f"log: {args.events} events on {args.partitions} partitions (produced at {produced:,.0f} events/s)")
        for workers in (int(w) for w in args.workers.split(",")):
            groups.append(f"{topic}-{workers}")
            result = await asyncio.to_thread(
                run, workers, groups[-1], topic, args.events, settings.postgres_dsn, settings.kafka_bootstrap
            )
            shares = "  ".join(",".join(map(str, partitions)) for partitions in result.assignment)
            print(
                f"workers {result.workers}   {result.rate:>8,.0f} events/s   "
                f"{result.cpu_ms_per_event:>6.3f} CPU ms/event (all workers)   partitions: {shares}"
            )
    finally:
        await cleanup(topic, settings.kafka_bootstrap, settings.postgres_dsn, groups)  # its own groups only


if __name__ == "__main__":
    asyncio.run(main())
