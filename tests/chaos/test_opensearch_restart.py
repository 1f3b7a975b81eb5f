"""OpenSearch (an OpenSearch of this test's own) stopped and started again while listings are created through
the property service: `/ready` of the property and the search service names OpenSearch while it is down
and stops naming it once it is back; a search meanwhile is answered 503, and no create 500 (a create does
not need the index); every listing answered 201, before, during and after, ends up in Postgres and in the
index, found by a search through the search service: the search projection waits OpenSearch out rather
than losing or parking what arrived meanwhile."""

import asyncio
import uuid

import httpx
import psycopg

from api.common.auth import issue_access_token
from api.services import by_name
from tests.support.command_load import CommandLoad
from tests.support.private_stack import PrivateStack
from tests.support.processes import WorkerProcess
from tests.support.property_projection import listing
from tests.support.services import ServiceProcess
from tests.support.waiting import eventually

RATE = 5.0
DOWN_SECONDS = 8.0  # how long OpenSearch stays away is the scenario


async def names_down(api: httpx.AsyncClient) -> set[str]:
    answer = await api.get("/ready", timeout=10)
    if answer.status_code == 200:
        return set()
    return {error["field"] for error in answer.json()["errors"]}


async def test_an_opensearch_restart_under_load_loses_no_listing(own_stack: PrivateStack, tmp_path):
    await asyncio.to_thread(own_stack.start_opensearch)
    env = own_stack.env()
    workers = [
        WorkerProcess("streams.properties.decider_app", env, tmp_path / "property-decider.log"),
        WorkerProcess("streams.properties.projection_worker", env, tmp_path / "property-projection.log"),
        WorkerProcess("streams.properties.search_worker", env, tmp_path / "property-search.log"),
    ]
    services = [
        ServiceProcess(by_name("property"), tmp_path / "property-service.log", env),
        ServiceProcess(by_name("search"), tmp_path / "search-service.log", env),
    ]
    tag = f"osrestart{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {issue_access_token(f'user-{tag}', 'USER')}"}
    for worker in workers:
        worker.start()
    try:
        for service in services:
            await service.start(within=120)  # import-heavy services on a machine shared with other suites
        async with (
            httpx.AsyncClient(base_url=services[0].url, timeout=60) as properties,
            httpx.AsyncClient(base_url=services[1].url, timeout=60) as search,
        ):

            async def create(n: int) -> httpx.Response:
                return await properties.post("/api/properties", json=listing(n, title=f"{tag} flat {n}"), headers=auth)

            async def status() -> int | None:
                try:
                    return (await create(0)).status_code
                except httpx.TimeoutException:
                    return None

            async def both_down() -> list[set[str]]:
                return [await names_down(properties), await names_down(search)]

            await eventually(status, lambda code: code == 201, within=240, every=0.5)
            assert all("opensearch" not in down for down in await both_down())
            load = CommandLoad(create, RATE, 60)
            running = asyncio.create_task(load.run())
            await eventually(lambda: asyncio.sleep(0, load.count(201)), lambda n: n >= RATE * 2, within=60)

            await asyncio.to_thread(own_stack.down, "opensearch")
            await eventually(both_down, lambda down: all("opensearch" in d for d in down), within=30)
            # A search meanwhile is answered 503 in the one error envelope, not 500.
            unavailable = await search.get("/api/search/properties", params={"q": tag})
            assert unavailable.status_code == 503, unavailable.text
            assert unavailable.json()["success"] is False
            await asyncio.sleep(DOWN_SECONDS)  # how long OpenSearch stays away is the scenario
            await asyncio.to_thread(own_stack.up_patiently, "opensearch")
            await eventually(both_down, lambda down: all("opensearch" not in d for d in down), within=60)
            back = load.count(201)
            await eventually(lambda: asyncio.sleep(0, load.count(201)), lambda n: n >= back + RATE * 2, within=60)
            load.stop()
            await running
            created = {str(a.body["data"]["id"]) for a in load.answers if a.status == 201 and a.body}  # type: ignore[index]
            counts = {status: load.count(status) for status in sorted({a.status for a in load.answers}, key=str)}
            # Never 500, never left unanswered.
            assert {a.status for a in load.answers} <= {201, 503}, counts

            async def in_postgres() -> set[str]:
                async with await psycopg.AsyncConnection.connect(own_stack.postgres_dsn) as pg:
                    cursor = await pg.execute("SELECT id FROM properties WHERE id = ANY(%s)", (sorted(created),))
                    return {row[0] for row in await cursor.fetchall()}

            async def searched() -> set[str]:
                """Every listing of this run a search through the search service finds, page by page."""
                found: set[str] = set()
                params: dict[str, str | int] = {"q": tag, "limit": 100, "facets": "false", "sort": "newest"}
                while True:
                    answer = await search.get("/api/search/properties", params=params)
                    assert answer.status_code in (200, 503), answer.text
                    if answer.status_code != 200:
                        return found
                    data = answer.json()["data"]
                    found |= {item["id"] for item in data["items"]}
                    if not data.get("nextCursor"):
                        return found
                    params = {**params, "cursor": data["nextCursor"]}

            rows = await eventually(in_postgres, lambda found: found == created, within=120, every=1)
            # The warm-up's listing is found too: every one of the load's, then.
            indexed = await eventually(searched, lambda found: created <= found, within=180, every=2)
    finally:
        for service in services:
            service.stop()
        for worker in workers:
            worker.stop()
    print(
        f"\nopensearch restart: {len(load.answers)} creates sent, answers {counts}; {len(created)} answered 201,"
        f" {len(rows)} in Postgres, {len(created & indexed)} found by a search"
    )
