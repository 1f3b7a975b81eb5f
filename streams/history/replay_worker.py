"""The history replay worker: `python -m streams.history.replay_worker`.

Runs rebuild jobs outside any API request. It follows `user-history-replays` (group
`settings.history_replay_group`, default `user-history-replayer`): each `history.rebuild.v1` command of
its namespace becomes a `queued` row in `user_history_replay_jobs`, written with the command's position
(checkpoint `user-history-replayer:<namespace>`, so `GET /api/user-history/replay/{jobId}` with the
202's X-Consistency-Token finds it). Jobs run one at a time, oldest first (`streams/history/rebuild.py`);
their state, phase, events processed and total, rate and ETA are written to the row twice a second.

At start it finishes what a previous run left: a `running` job resumes from the positions written with
its rows; generations retired or failed but not yet dropped are dropped. Between jobs it drops the
point-in-time copies older than `HI_HISTORY_SNAPSHOT_RETENTION_SECONDS` (30 days by default).
"""

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DeleteGroupsRequest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from redis.asyncio import Redis

from config import Settings, get_settings
from schemas.codec import EventDecodeError, decode
from schemas.history import REBUILD_HISTORY, JobPhase, JobState, RebuildHistory, replayer_checkpoint
from schemas.topics import DEAD_LETTERS, USER_HISTORY_REPLAYS
from streams import metrics
from streams.batches import until_done
from streams.checkpoints import raise_checkpoints
from streams.consumer_lag import ConsumerLag
from streams.dead_letters import DeadLetter
from streams.history.generations import Generation, by_job, drop_generation, ensure_live
from streams.history.rebuild import JobSpec, Progress, Rebuild, offsets_json, rebuild_group
from streams.history.topics import history_topic_names
from streams.positions import SourcePosition

log = logging.getLogger("streams.history.replay_worker")

REPLAYER_CONSUMER = "user-history-replayer"


_RECORD_JOB = """
INSERT INTO user_history_replay_jobs (job_id, namespace, state, phase, scope_user_id, from_time, until_time,
    requested_by, requested_at)
VALUES (%s, %s, 'queued', 'queued', %s, %s, %s, %s, %s)
ON CONFLICT (job_id) DO NOTHING
"""

_REPORT = """
UPDATE user_history_replay_jobs SET state = 'running', phase = %s, generation = %s, consumer_group = %s,
    start_offsets = %s, load_offsets = %s, stop_offsets = %s, events_total = %s, events_processed = %s,
    events_per_second = %s, eta_seconds = %s, started_at = coalesce(started_at, now()), updated_at = now()
WHERE job_id = %s
"""

# A completed job's rate is over the whole job, start to swap (a small job can end before a first
# measurement while loading).
_FINISH = """
UPDATE user_history_replay_jobs SET state = %(state)s, phase = %(phase)s, error = %(error)s, finished_at = now(),
    updated_at = now(),
    eta_seconds = CASE WHEN %(state)s = 'completed' THEN 0 ELSE NULL END,
    events_per_second = CASE
        WHEN %(state)s = 'completed' AND started_at IS NOT NULL AND events_processed > 0
        THEN round(events_processed / greatest(extract(epoch FROM now() - started_at), 0.001), 1)
        ELSE events_per_second END
WHERE job_id = %(job_id)s
"""


_EXPIRED_SNAPSHOTS = """
SELECT job_id FROM user_history_replay_jobs
WHERE namespace = %s AND until_time IS NOT NULL AND state = 'completed' AND snapshot_dropped_at IS NULL
  AND finished_at < now() - make_interval(secs => %s)
ORDER BY finished_at
"""


class ReplayWorker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.namespace = settings.history_namespace
        self.pool = AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=4, open=False)
        self.redis = Redis.from_url(settings.redis_url)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        await self.pool.open(wait=False)
        await self.producer.start()
        try:
            await until_done("postgres", lambda: ensure_live(self.pool, self.namespace))
            await until_done("postgres", self.drop_leftovers)
            tasks = [
                asyncio.create_task(self.follow_commands(), name="follow-replay-commands"),
                asyncio.create_task(self.run_jobs(), name="run-replay-jobs"),
            ]
            if self.settings.metrics_port and metrics.serve(self.settings.metrics_host, self.settings.metrics_port):
                group = {self.settings.history_replay_group: [USER_HISTORY_REPLAYS.name]}
                lag = ConsumerLag(self.settings.kafka_bootstrap, lambda: group)
                tasks.append(asyncio.create_task(lag.run(self.settings.metrics_interval_seconds), name="lag"))
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for task in done:
                if task is not stopping and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            await self.producer.stop()
            await self.redis.aclose()
            await self.pool.close()

    # ---- commands -> queued jobs ----

    async def follow_commands(self) -> None:
        consumer = AIOKafkaConsumer(
            USER_HISTORY_REPLAYS.name,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.settings.history_replay_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The broker answers a fetch as soon as a command arrives; the wait only bounds an empty one, and
            # a long one spares the idle worker and the broker the empty fetches (500 ms by default).
            fetch_max_wait_ms=5000,
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=5000, max_records=100)
                for messages in batches.values():
                    for message in messages:
                        position = SourcePosition(message.topic, message.partition, message.offset)
                        await until_done("postgres", lambda m=message, p=position: self.record(m.key, m.value, p))
                if batches:
                    await consumer.commit()
                    self.wake.set()
        finally:
            await consumer.stop()

    async def record(self, key: bytes | None, value: bytes | None, position: SourcePosition) -> None:
        try:
            envelope = decode(value)
            if envelope.type != REBUILD_HISTORY:
                raise EventDecodeError(f"{envelope.type} does not belong on {USER_HISTORY_REPLAYS.name}")
            command = RebuildHistory.model_validate(envelope.data)
        except (EventDecodeError, ValidationError) as exc:
            letter = DeadLetter(key, value, f"not a rebuild command: {exc}", position, REPLAYER_CONSUMER)
            metrics.dead_lettered(letter.consumer, letter.error)
            await self.producer.send_and_wait(DEAD_LETTERS.name, value, key=key, headers=list(letter.headers()))
            return
        async with self.pool.connection() as conn, conn.transaction():
            if command.namespace == self.namespace:
                await conn.execute(
                    _RECORD_JOB,
                    (
                        command.job_id,
                        command.namespace,
                        command.user_id,
                        command.from_time,
                        command.until,
                        command.requested_by,
                        envelope.time,
                    ),
                )
            # Another namespace's command is not ours to run, but it has been read.
            await raise_checkpoints(conn, replayer_checkpoint(self.namespace), [position])

    # ---- jobs ----

    async def run_jobs(self) -> None:
        """Only the holder of the namespace's session lock runs jobs: a second replay worker waits as a
        standby, and takes over (resuming the job) when the first one's connection goes, crash or not."""
        leader = await until_done("postgres", self._lead)
        try:
            await self._run_jobs()
        finally:
            await leader.close()

    async def _lead(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.settings.postgres_dsn, autocommit=True)
        try:
            await conn.execute("SELECT pg_advisory_lock(hashtext('user-history-replayer:' || %s))", (self.namespace,))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _run_jobs(self) -> None:
        while True:
            job = await until_done("postgres", self.next_job)
            if job is None:
                await until_done("postgres", self.drop_expired_snapshots)
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=2.0)
                continue
            await self.run_job(job)

    async def drop_expired_snapshots(self) -> None:
        """Point-in-time copies older than the retention go, between jobs (never under a running one)."""
        retention = self.settings.history_snapshot_retention_seconds
        if retention <= 0:
            return
        async with self.pool.connection() as conn:
            cursor = await conn.execute(_EXPIRED_SNAPSHOTS, (self.namespace, retention))
            expired = [job_id for (job_id,) in await cursor.fetchall()]
        for job_id in expired:
            async with self.pool.connection() as conn:
                snapshot = await by_job(conn, job_id)
            if snapshot is not None and snapshot.kind == "snapshot":
                await drop_generation(self.pool, self.redis, snapshot)
            async with self.pool.connection() as conn:
                await conn.execute(
                    "UPDATE user_history_replay_jobs SET snapshot_dropped_at = now(), updated_at = now()"
                    " WHERE job_id = %s",
                    (job_id,),
                )
            log.info("job %s: its point-in-time copy is past the retention and was dropped", job_id)

    async def next_job(self) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cursor = await conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM user_history_replay_jobs WHERE namespace = %s AND state IN ('queued', 'running')"
                " ORDER BY requested_at, job_id LIMIT 1",
                (self.namespace,),
            )
            return await cursor.fetchone()

    async def run_job(self, job: dict[str, Any]) -> None:
        spec = JobSpec(job["job_id"], job["namespace"], job["scope_user_id"], job["from_time"], job["until_time"])
        group = rebuild_group(spec.job_id)
        async with self.pool.connection() as conn:
            done = await by_job(conn, spec.job_id)
        if done is not None and done.state in ("live", "ready", "retired"):
            # A previous run swapped it in (or published the snapshot) and stopped before saying so.
            await self._finish(spec.job_id, JobState.COMPLETED, None)
            return

        async def report(progress: Progress, generation: Generation | None) -> None:
            metrics.REBUILD_PROCESSED.labels(spec.job_id).set(progress.processed)
            metrics.REBUILD_TOTAL.labels(spec.job_id).set(progress.total)
            metrics.REBUILD_RATE.labels(spec.job_id).set(progress.rate() or 0.0)
            await until_done("postgres", lambda: self._report(spec, group, progress, generation, rebuild))

        rebuild = Rebuild(
            spec,
            pool=self.pool,
            redis=self.redis,
            producer=self.producer,
            bootstrap=self.settings.kafka_bootstrap,
            topics=history_topic_names(self.settings),
            report=report,
            batch_size=self.settings.history_rebuild_batch_size,
            max_events_per_second=self.settings.history_rebuild_max_events_per_second,
            stored_offsets={
                "start": job["start_offsets"],
                "load": job["load_offsets"],
                "stop": job["stop_offsets"],
            },
        )
        log.info("job %s: %s rebuild of namespace %s started", spec.job_id, spec.kind, spec.namespace)
        metrics.REBUILD_RUNNING.set(1)
        try:
            await rebuild.run()
        except asyncio.CancelledError:
            raise  # the worker is stopping: the job resumes at the next start
        except Exception as exc:
            log.exception("job %s failed", spec.job_id)
            await rebuild.discard()
            await self._finish(spec.job_id, JobState.FAILED, f"{type(exc).__name__}: {exc}"[:2000])
        else:
            await self._finish(spec.job_id, JobState.COMPLETED, None)
            log.info("job %s completed", spec.job_id)
        finally:
            # One job runs at a time: its series go with it, so the job label stays bounded.
            metrics.REBUILD_RUNNING.set(0)
            for gauge in (metrics.REBUILD_PROCESSED, metrics.REBUILD_TOTAL, metrics.REBUILD_RATE):
                with contextlib.suppress(KeyError):
                    gauge.remove(spec.job_id)
        await self._delete_group(group)

    async def _report(
        self, spec: JobSpec, group: str, progress: Progress, generation: Generation | None, rebuild: Rebuild
    ) -> None:
        offsets = rebuild.offsets
        rate = progress.rate()
        async with self.pool.connection() as conn:
            await conn.execute(
                _REPORT,
                (
                    progress.phase,
                    generation.number if generation else None,
                    group,
                    Jsonb(offsets_json(offsets["start"])) if "start" in offsets else None,
                    Jsonb(offsets_json(offsets["load"])) if "load" in offsets else None,
                    Jsonb(offsets_json(offsets["stop"])) if "stop" in offsets else None,
                    progress.total,
                    progress.processed,
                    round(rate, 1) if rate is not None else None,
                    round(eta, 1) if (eta := progress.eta()) is not None else None,
                    spec.job_id,
                ),
            )

    async def _finish(self, job_id: str, state: JobState, error: str | None) -> None:
        phase = JobPhase.DONE if state == JobState.COMPLETED else "failed"

        async def finish() -> None:
            async with self.pool.connection() as conn:
                await conn.execute(_FINISH, {"state": state.value, "phase": phase, "error": error, "job_id": job_id})

        await until_done("postgres", finish)

    async def _delete_group(self, group: str) -> None:
        """The rebuild's group only had offsets for Kafka's tools to show; gone with its job. aiokafka's
        admin client has no DeleteGroups call, so the request is sent to the group's coordinator."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        try:
            await admin.start()
            coordinator = await admin.find_coordinator(group)
            await admin._send_request_to_node(coordinator, DeleteGroupsRequest([group]))
        except Exception as exc:
            log.info("could not delete consumer group %s (%s); it expires with its offsets", group, exc)
        finally:
            await admin.close()

    async def drop_leftovers(self) -> None:
        """Generations a crash left behind: retired ones not yet dropped, failed ones, and the generations
        of jobs that are over."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT g.namespace, g.generation, g.kind, g.state, g.job_id, g.scope_user_id"
                " FROM user_history_generations g LEFT JOIN user_history_replay_jobs j USING (job_id)"
                " WHERE g.namespace = %s AND (g.state IN ('retired', 'failed')"
                " OR (g.state = 'building' AND (j.job_id IS NULL OR j.state IN ('completed', 'failed'))))",
                (self.namespace,),
            )
            leftovers = [Generation(*row) for row in await cursor.fetchall()]
        for generation in leftovers:
            await drop_generation(self.pool, self.redis, generation)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.history.replay_worker", description=__doc__)
    # `worker -l info`, as every worker is started by ops.run and the tests, is accepted and ignored.
    parser.add_argument("command", nargs="?", default="worker")
    parser.add_argument("-l", "--loglevel", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await ReplayWorker(settings).run(stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
