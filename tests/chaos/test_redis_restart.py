"""Redis restarted while listings are created through the property service (a Redis of this test's own):
`/ready` names Redis while it is down and stops naming it once it is back; every listing answered 201,
before, during and after, ends up in Postgres and in Redis: the projection waits Redis out rather than
losing or parking what arrived meanwhile."""

import asyncio
import uuid

import httpx
import psycopg
import redis.asyncio as redis

from api.common.auth import issue_access_token
from api.services import by_name
from tests.support.command_load import CommandLoad
from tests.support.processes import WorkerProcess
from tests.support.property_projection import listing
from tests.support.services import ServiceProcess
from tests.support.waiting import eventually

RATE = 10.0
DOWN_SECONDS = 8.0


async def names_down(api: httpx.AsyncClient) -> set[str]:
    answer = await api.get("/ready", timeout=10)
    if answer.status_code == 200:
        return set()
    return {error["field"] for error in answer.json()["errors"]}


async def test_a_redis_restart_under_load_loses_no_listing(own_stack, tmp_path):
    env = own_stack.env()
    workers = [
        WorkerProcess("streams.properties.decider_app", env, tmp_path / "property-decider.log"),
        WorkerProcess("streams.properties.projection_worker", env, tmp_path / "property-projection.log"),
    ]
    service = ServiceProcess(by_name("property"), tmp_path / "property-service.log", env)
    owner = f"user-redis-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {issue_access_token(owner, 'USER')}"}
    for worker in workers:
        worker.start()
    await service.start(within=120)  # an import-heavy service on a machine shared with other suites
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as api:

            async def create(n: int) -> httpx.Response:
                return await api.post("/api/properties", json=listing(n), headers=auth)

            async def status() -> int | None:
                try:
                    return (await create(0)).status_code
                except httpx.TimeoutException:
                    return None

            await eventually(status, lambda code: code == 201, within=240, every=0.5)
            assert "redis" not in await names_down(api)
            load = CommandLoad(create, RATE, 60)
            running = asyncio.create_task(load.run())
            await eventually(lambda: asyncio.sleep(0, load.count(201)), lambda n: n >= RATE * 2, within=60)

            await asyncio.to_thread(own_stack.down, "redis")
            await eventually(lambda: names_down(api), lambda down: "redis" in down, within=15)
            await asyncio.sleep(DOWN_SECONDS)  # how long Redis stays away is the scenario
            during = load.count(201)
            await asyncio.to_thread(own_stack.up, "redis")
            await eventually(lambda: names_down(api), lambda down: "redis" not in down, within=30)
            await eventually(lambda: asyncio.sleep(0, load.count(201)), lambda n: n >= during + RATE * 2, within=60)
            load.stop()
            await running
        created = [a.body["data"]["id"] for a in load.answers if a.status == 201 and a.body]
        assert {a.status for a in load.answers} <= {201, 503}

        async def in_postgres() -> set[str]:
            async with await psycopg.AsyncConnection.connect(own_stack.postgres_dsn) as pg:
                cursor = await pg.execute("SELECT id FROM properties WHERE id = ANY(%s)", (created,))
                return {row[0] for row in await cursor.fetchall()}

        cache = redis.from_url(own_stack.redis_url)
        try:

            async def in_redis() -> set[str]:
                documents = await cache.mget([f"property:{pid}" for pid in created])
                return {pid for pid, document in zip(created, documents, strict=True) if document}

            await eventually(in_postgres, lambda found: found == set(created), within=120, every=1)
            found = await eventually(in_redis, lambda found: found == set(created), within=120, every=1)
        finally:
            await cache.aclose()
    finally:
        service.stop()
        for worker in workers:
            worker.stop()
    print(
        f"\nredis restart: {len(load.answers)} creates sent, {load.count(201)} answered 201, {load.count(503)} 503; "
        f"{len(found)} in Postgres and Redis"
    )
