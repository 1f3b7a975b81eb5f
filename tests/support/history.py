"""The user-history slice running for real, in a namespace of its own: the live projection and the replay
worker under their own consumer groups (started at the topics' ends, so they read only what the test
produces until a test replays from the earliest offsets), an archive worker for `/events`, and the
user-history service. Dropped afterwards: the namespace's generations, jobs, checkpoints, Redis keys."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DeleteGroupsRequest
from psycopg import sql
from redis.asyncio import Redis

from api.services import by_name
from config.settings import Settings
from schemas.topics import EVENT_TOPICS, USER_HISTORY_REPLAYS
from streams.history.topics import HISTORY_TOPICS
from tests.support.processes import WorkerProcess
from tests.support.property_projection import start_group_at_end
from tests.support.services import ServiceProcess

HISTORY_TOPIC_NAMES = tuple(topic.name for topic in HISTORY_TOPICS)


@dataclass
class HistorySlice:
    namespace: str
    group: str
    service: ServiceProcess
    projection: WorkerProcess
    replayer: WorkerProcess
    archive: WorkerProcess
    env: dict[str, str]
    log_dir: Path

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.service.url, timeout=30)

    def new_projection(self) -> WorkerProcess:
        return WorkerProcess("streams.history.projection_worker", self.env, self.log_dir / f"{self.group}.log")

    def new_replayer(self, **settings: str) -> WorkerProcess:
        """A replay worker of this slice; `settings` are extra HI_* variables for this one only."""
        env = {**self.env, **settings}
        return WorkerProcess("streams.history.replay_worker", env, self.log_dir / "history-replayer.log")


def history_env(namespace: str) -> dict[str, str]:
    return {
        "HI_HISTORY_NAMESPACE": namespace,
        "HI_HISTORY_GROUP": f"user-history-{namespace}",
        "HI_HISTORY_REPLAY_GROUP": f"user-history-replayer-{namespace}",
        # A loaded two-core machine runs every worker of the suite; the read-your-writes bound is generous.
        "HI_CONSISTENCY_WAIT_SECONDS": "15",
    }


@asynccontextmanager
async def running_history_slice(log_dir: Path, env: dict[str, str], settings: Settings) -> AsyncIterator[HistorySlice]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    mine = {**env, **history_env(namespace)}
    group = mine["HI_HISTORY_GROUP"]
    archive_group = f"event-archive-history-{namespace}"
    await start_group_at_end(settings.kafka_bootstrap, group, HISTORY_TOPIC_NAMES)
    await start_group_at_end(settings.kafka_bootstrap, mine["HI_HISTORY_REPLAY_GROUP"], (USER_HISTORY_REPLAYS.name,))
    await start_group_at_end(settings.kafka_bootstrap, archive_group, tuple(t.name for t in EVENT_TOPICS))
    projection = WorkerProcess("streams.history.projection_worker", mine, log_dir / f"{group}.log")
    replayer = WorkerProcess("streams.history.replay_worker", mine, log_dir / "history-replayer.log")
    archive = WorkerProcess("streams.archive", {**env, "HI_ARCHIVE_GROUP": archive_group}, log_dir / "archive.log")
    service = ServiceProcess(by_name("user-history"), log_dir / "user-history-service.log", mine)
    slice_ = HistorySlice(namespace, group, service, projection, replayer, archive, mine, log_dir)
    try:
        for worker in (projection, replayer, archive):
            worker.start()
        await service.start()
        yield slice_
    finally:
        service.stop()
        for worker in (slice_.projection, slice_.replayer, archive):
            worker.stop()
        await drop_namespace(settings, namespace)
        await delete_groups(settings.kafka_bootstrap, [group, mine["HI_HISTORY_REPLAY_GROUP"], archive_group])


async def drop_namespace(settings: Settings, namespace: str) -> None:
    async with await psycopg.AsyncConnection.connect(settings.postgres_dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT schema_name FROM user_history_generations WHERE namespace = %s", (namespace,)
        )
        for (schema,) in await cursor.fetchall():
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        await conn.execute("DELETE FROM user_history_live WHERE namespace = %s", (namespace,))
        await conn.execute("DELETE FROM user_history_generations WHERE namespace = %s", (namespace,))
        await conn.execute("DELETE FROM user_history_replay_jobs WHERE namespace = %s", (namespace,))
        await conn.execute(
            "DELETE FROM projection_checkpoints WHERE projection LIKE %s OR projection = %s",
            (f"user-history:{namespace}:%", f"user-history-replayer:{namespace}"),
        )
    redis = Redis.from_url(settings.redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"history:{namespace}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await redis.unlink(*keys[start : start + 1000])
    finally:
        await redis.aclose()


async def live_schema(pg: psycopg.AsyncConnection, namespace: str) -> str:
    cursor = await pg.execute(
        "SELECT g.schema_name FROM user_history_live l JOIN user_history_generations g USING (namespace, generation)"
        " WHERE l.namespace = %s",
        (namespace,),
    )
    row = await cursor.fetchone()
    assert row is not None, f"namespace {namespace} has no live generation"
    return row[0]


async def user_rows(pg: psycopg.AsyncConnection, schema: str, user_ids: list[str]) -> list[tuple[Any, ...]]:
    """Every column of the users' activity rows, in a fixed order: "the same, to the row"."""
    cursor = await pg.execute(
        sql.SQL("SELECT * FROM {} WHERE user_id = ANY(%s) ORDER BY event_id").format(
            sql.Identifier(schema, "activities")
        ),
        (user_ids,),
    )
    return await cursor.fetchall()


async def wait_for_job(
    client: httpx.AsyncClient, headers: dict[str, str], job_id: str, within: float
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        answer = await client.get(f"/api/user-history/replay/{job_id}", headers=headers)
        if answer.status_code == 200 and answer.json()["data"]["state"] in ("completed", "failed"):
            return answer.json()["data"]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} not finished within {within}s: {answer.status_code} {answer.text}")
        await asyncio.sleep(0.5)


async def delete_groups(bootstrap: str, groups: list[str]) -> None:
    """Consumer groups a test made; aiokafka's admin client has no DeleteGroups call, so the request goes
    to each group's coordinator (as the replay worker does for its rebuilds' groups)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for group in groups:
            coordinator = await admin.find_coordinator(group)
            await admin._send_request_to_node(coordinator, DeleteGroupsRequest([group]))
    finally:
        await admin.close()
