"""Replaying user history, for operators: `python -m ops.history_replay COMMAND`.

    kafka-reset           Kafka's own procedure, in place (`make replay-history`): with the history worker
                          stopped, reset its consumer group to the earliest offsets with Kafka's
                          consumer-groups tool, then run the worker until it has re-read everything
                          (progress bar: events, rate, ETA) and stop it. Every write is keyed by event
                          id, so the tables converge to exactly what they were (plus anything new).
    start [--user U] [--from T] [--until T]
                          A blue/green rebuild by the replay worker (the same command as
                          POST /api/user-history/replay), followed with a progress bar.
    watch JOB             Follow a rebuild job: state, phase, events processed/total, rate, ETA.

The settings are the usual `HI_*` ones (`HI_HISTORY_GROUP`, `HI_HISTORY_NAMESPACE`, ...).
"""

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from psycopg.rows import dict_row

from config import Settings, get_settings
from config.settings import PROJECT_ROOT
from schemas.codec import encode
from schemas.envelope import new_event
from schemas.history import REBUILD_HISTORY, RebuildHistory
from schemas.ids import new_id
from schemas.topics import USER_HISTORY_REPLAYS
from streams.history.topics import history_topic_names

KAFKA_CLI = PROJECT_ROOT / "ops" / "kafka-cli"


# ---- the progress bar ----


def bar(processed: int, total: int, rate: float | None, eta: float | None, note: str = "", width: int = 30) -> str:
    share = processed / total if total else 0.0
    filled = min(width, int(share * width))
    speed = f"{rate:>9,.0f} ev/s" if rate else "        - ev/s"
    remaining = f"ETA {eta:>5.0f}s" if eta is not None else "ETA     -"
    progress = f"{share:6.1%}  {processed:>10,}/{total:<10,}"
    return f"[{'#' * filled}{'-' * (width - filled)}] {progress} {speed}  {remaining}  {note}"


class ProgressLine:
    """`\\r`-redrawn on a terminal; a line every few seconds into a log."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self._last = 0.0

    def show(self, text: str, final: bool = False) -> None:
        if self.tty:
            columns = shutil.get_terminal_size((120, 20)).columns
            sys.stdout.write("\r" + text[: columns - 1].ljust(columns - 1) + ("\n" if final else ""))
            sys.stdout.flush()
        elif final or time.monotonic() - self._last >= 2:
            self._last = time.monotonic()
            print(text, flush=True)


# ---- kafka-reset ----


async def _offsets(settings: Settings) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(beginning, end) offsets of every partition history reads."""
    partitions = await _partitions(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def _partitions(settings: Settings) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(history_topic_names(settings))
    finally:
        await admin.close()
    return [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]


async def _committed(settings: Settings, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def reset_to_earliest(settings: Settings, group: str) -> None:
    """Kafka's own consumer-groups tool, exactly as an operator would type it."""
    command = [
        str(KAFKA_CLI),
        "consumer-groups",
        "--bootstrap-server",
        settings.kafka_bootstrap,
        "--group",
        group,
        "--reset-offsets",
        "--to-earliest",
        "--all-topics",
        "--execute",
    ]
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    print(result.stdout.strip())
    refused = "inactive" in (result.stdout + result.stderr) or result.returncode != 0
    if refused:
        print(result.stderr.strip(), file=sys.stderr)
        raise SystemExit(
            f"Kafka refused to reset group {group}: stop the history worker first "
            "(`make run` hosts its group `user-history` in `projection-host`: stop `make run`), then run this again."
        )


async def kafka_reset(settings: Settings, run_worker: bool, within: float) -> None:
    group = settings.history_group
    reset_to_earliest(settings, group)
    if not run_worker:
        print(f"Offsets of {group} are at the earliest. Start the history worker to replay:")
        print("  .venv/bin/python -m streams.history.projection_worker worker -l info   (or `make run`)")
        return
    beginning, end = await _offsets(settings)
    total = sum(end[tp] - beginning[tp] for tp in end)
    logs = settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "history-replay.log").open("ab") as log:
        worker = subprocess.Popen(  # noqa: ASYNC220  (started once, then only polled)
            [sys.executable, "-m", "streams.history.projection_worker", "worker", "-l", "info"],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    line = ProgressLine()
    started, first = time.monotonic(), None
    try:
        while True:
            committed = await _committed(settings, group)
            processed = sum(max(0, min(committed.get(tp, beginning[tp]), end[tp]) - beginning[tp]) for tp in end)
            now = time.monotonic()
            if processed and first is None:
                first = (now, processed)
            rate = (processed - first[1]) / (now - first[0]) if first and now - first[0] > 1 else None
            eta = (total - processed) / rate if rate else None
            done = all(committed.get(tp, beginning[tp]) >= end[tp] for tp in end)
            line.show(bar(processed, total, rate, eta, "replaying"), final=done)
            if done:
                break
            if worker.poll() is not None:
                raise SystemExit(f"the history worker exited ({worker.returncode}); see {logs / 'history-replay.log'}")
            if now - started > within:
                raise SystemExit(f"not caught up within {within:.0f}s; the worker keeps its offsets, run it again")
            await asyncio.sleep(0.5)
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=60)
    print(
        f"Replayed {total:,} events in {time.monotonic() - started:.1f}s. Start the history worker again (`make run`)."
    )


# ---- blue/green jobs ----


async def start_job(settings: Settings, user_id: str | None, from_time: datetime | None, until: datetime | None) -> str:
    job_id = new_id("job")
    command = RebuildHistory(
        job_id=job_id,
        namespace=settings.history_namespace,
        user_id=user_id,
        from_time=from_time,
        until=until,
        requested_by="ops.history_replay",
    )
    envelope = new_event(type=REBUILD_HISTORY, subject=job_id, data=command.to_wire(), service="ops")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(USER_HISTORY_REPLAYS.name, encode(envelope), key=job_id.encode())
    finally:
        await producer.stop()
    print(f"rebuild requested: {job_id}", flush=True)
    return job_id


async def watch(settings: Settings, job_id: str, within: float) -> dict[str, Any]:
    line = ProgressLine()
    deadline = time.monotonic() + within
    async with await psycopg.AsyncConnection.connect(settings.postgres_dsn, autocommit=True) as conn:
        while True:
            cursor = await conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM user_history_replay_jobs WHERE job_id = %s", (job_id,)
            )
            job = await cursor.fetchone()
            if job is None:
                line.show(f"{job_id}: not picked up yet (is the replay worker running?)")
            else:
                final = job["state"] in ("completed", "failed")
                note = f"{job['state']}/{job['phase']}"
                total = job["events_total"] or (job["events_processed"] if final else 0)
                line.show(
                    bar(job["events_processed"], total, job["events_per_second"], job["eta_seconds"], note),
                    final=final,
                )
                if final:
                    if job["state"] == "failed":
                        raise SystemExit(f"{job_id} failed: {job['error']}")
                    took = (job["finished_at"] - job["started_at"]).total_seconds() if job["started_at"] else 0
                    print(f"{job_id} completed: {job['events_processed']:,} events in {took:.1f}s")
                    return job
            if time.monotonic() > deadline:
                raise SystemExit(f"{job_id} still running after {within:.0f}s; `watch {job_id}` to follow it again")
            await asyncio.sleep(0.5)


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2024-01-15T10:30:00Z")
    return parsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ops.history_replay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    reset = commands.add_parser("kafka-reset", help="reset the history group with Kafka's tool and replay in place")
    reset.add_argument("--no-run", action="store_true", help="only reset; start the worker yourself")
    reset.add_argument("--within", type=float, default=3600, help="give up waiting after this many seconds")
    start = commands.add_parser("start", help="a blue/green rebuild by the replay worker, followed")
    start.add_argument("--user", help="only this user's history")
    start.add_argument("--from", dest="from_time", type=_time, help="replay from this time (default: earliest)")
    start.add_argument("--until", type=_time, help="a read-only copy of history as it was then")
    start.add_argument("--no-watch", action="store_true")
    start.add_argument("--within", type=float, default=3600)
    follow = commands.add_parser("watch", help="follow a rebuild job")
    follow.add_argument("job_id")
    follow.add_argument("--within", type=float, default=3600)
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "kafka-reset":
        asyncio.run(kafka_reset(settings, run_worker=not args.no_run, within=args.within))
    elif args.command == "start":
        job_id = asyncio.run(start_job(settings, args.user, args.from_time, args.until))
        if not args.no_watch:
            asyncio.run(watch(settings, job_id, args.within))
    else:
        asyncio.run(watch(settings, args.job_id, args.within))


if __name__ == "__main__":
    main()
