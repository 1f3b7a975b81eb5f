"""Redis restarted while listings are created through the property service (a Redis of this test's own):
`/ready` names Redis while it is down and stops naming it once it is back; every listing answered 201,
before, during and after, ends up in Postgres and in Redis: the projection waits Redis out rather than
losing or parking what arrived meanwhile."""

import asyncio

import httpx
import redis.asyncio as redis

from tests.support.command_load import CommandLoad
from tests.support.property_creates import creating_listings, in_postgres
from tests.support.waiting import eventually

RATE = 10.0
DOWN_SECONDS = 8.0


async def names_down(api: httpx.AsyncClient) -> set[str]:
    answer = await api.get("/ready", timeout=10)
    if answer.status_code == 200:
        return set()
    return {error["field"] for error in answer.json()["errors"]}


async def test_a_redis_restart_under_load_loses_no_listing(own_stack, tmp_path):
    async with creating_listings(own_stack.env(), tmp_path, "redis") as creating:
        api = creating.api
        assert "redis" not in await names_down(api)
        load = CommandLoad(creating.create, RATE, 60)
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
        created = {a.body["data"]["id"] for a in load.answers if a.status == 201 and a.body}
        assert {a.status for a in load.answers} <= {201, 503}

        cache = redis.from_url(own_stack.redis_url)
        try:

            async def in_redis() -> set[str]:
                ids = sorted(created)
                documents = await cache.mget([f"property:{pid}" for pid in ids])
                return {pid for pid, document in zip(ids, documents, strict=True) if document}

            await eventually(
                lambda: in_postgres(own_stack.postgres_dsn, created),
                lambda found: found == created,
                within=120,
                every=1,
            )
            found = await eventually(in_redis, lambda found: found == created, within=120, every=1)
        finally:
            await cache.aclose()
    print(
        f"\nredis restart: {len(load.answers)} creates sent, {load.count(201)} answered 201, {load.count(503)} 503; "
        f"{len(found)} in Postgres and Redis"
    )
