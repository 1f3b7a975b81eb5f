"""The search slice running for real, on aliases and consumer groups of its own.

Beside the property slice (decider, projections, property service), it starts:
- the property search projection under a test group, writing to a test alias of `properties`. The
  alias is filtered to this run's owners (`user-<run>-…`), so what the search service finds is exactly
  the listings this run created, whatever else the machine's other tests list meanwhile;
- the search projection and the saved-search matcher under test groups, with a test percolator alias;
- the search service, pointed at both aliases.
Each test group first commits the end offsets of its topics, so it reads only what comes after.
"""

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api.common.auth import issue_access_token
from api.services import by_name
from config import get_settings
from config.settings import PROJECT_ROOT
from ops.demo_data import demo_listing
from ops.search_index import BODIES, create_index, ensure_index, new_index_name
from schemas.topics import PROPERTIES, SEARCHES, USERS
from tests.support.processes import WorkerProcess
from tests.support.properties import PropertySlice, running_property_slice
from tests.support.property_projection import start_group_at_end
from tests.support.services import ServiceProcess
from tests.support.waiting import eventually

CONSISTENCY = "X-Consistency-Token"


def bearer(user_id: str, role: str = "USER") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(user_id, role)}"}


@dataclass
class SearchSlice:
    run: str
    properties_alias: str
    saved_alias: str
    matcher_group: str
    service: ServiceProcess
    properties: PropertySlice
    workers: list[WorkerProcess]

    def owner(self, n: int = 0) -> str:
        """A user of this run: their listings are the ones the test alias shows."""
        return f"user-{self.run}-{n:02d}"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.service.url, timeout=30)


def _filtered_alias(alias: str, owner_prefix: str) -> None:
    settings = get_settings()
    index = new_index_name(alias)
    with httpx.Client(base_url=settings.opensearch_url, timeout=30) as client:
        create_index(client, index, BODIES["properties"]())
        add = {"index": index, "alias": alias, "is_write_index": True, "filter": {"prefix": {"ownerId": owner_prefix}}}
        client.post("/_aliases", json={"actions": [{"add": add}]}).raise_for_status()


def _drop_faust_dirs(groups: list[str]) -> None:
    """Faust makes `<app id>-data` in the working directory, one per test group: not worth keeping."""
    for group in groups:
        shutil.rmtree(PROJECT_ROOT / f"{group}-data", ignore_errors=True)


def _drop_indices(*aliases: str) -> None:
    with httpx.Client(base_url=get_settings().opensearch_url, timeout=30) as client:
        for alias in aliases:
            client.delete(f"/{alias}-v*")


@asynccontextmanager
async def running_search_slice(log_dir: Path, env: dict[str, str], max_saved: int = 3) -> AsyncIterator[SearchSlice]:
    run = f"st{uuid.uuid4().hex[:10]}"
    properties_alias, saved_alias = f"search-test-{run}", f"saved-searches-test-{run}"
    groups = {name: f"search-test-{run}-{name}" for name in ("listings", "projection", "matcher")}
    settings = get_settings()
    _filtered_alias(properties_alias, f"user-{run}-")
    ensure_index("saved-searches", saved_alias)
    await start_group_at_end(settings.kafka_bootstrap, groups["listings"], (PROPERTIES.name,))
    await start_group_at_end(settings.kafka_bootstrap, groups["projection"], (SEARCHES.name, USERS.name))
    await start_group_at_end(settings.kafka_bootstrap, groups["matcher"], (PROPERTIES.name,))
    aliases = {"HI_OPENSEARCH_PROPERTIES_ALIAS": properties_alias, "HI_OPENSEARCH_SAVED_SEARCHES_ALIAS": saved_alias}
    workers = [
        WorkerProcess(
            "streams.properties.search_worker",
            {**env, **aliases, "HI_PROPERTY_SEARCH_PROJECTION_GROUP": groups["listings"]},
            log_dir / "search-test-listings.log",
        ),
        WorkerProcess(
            "streams.searches.projection_worker",
            {**env, **aliases, "HI_SEARCH_PROJECTION_GROUP": groups["projection"]},
            log_dir / "search-test-projection.log",
        ),
        WorkerProcess(
            "streams.searches.matcher_worker",
            {**env, **aliases, "HI_SAVED_SEARCH_MATCHER_GROUP": groups["matcher"]},
            log_dir / "search-test-matcher.log",
        ),
    ]
    service = ServiceProcess(
        by_name("search"),
        log_dir / "search-service.log",
        {**env, **aliases, "HI_MAX_SAVED_SEARCHES_PER_USER": str(max_saved)},
    )
    try:
        for worker in workers:
            worker.start()
        async with running_property_slice(log_dir, env) as properties:
            await service.start()
            slice_ = SearchSlice(run, properties_alias, saved_alias, groups["matcher"], service, properties, workers)
            await _until_workers_answer(slice_)
            yield slice_
    finally:
        service.stop()
        for worker in workers:
            worker.stop()
        _drop_indices(properties_alias, saved_alias)
        _drop_faust_dirs(list(groups.values()))


async def create_listing(slice_: SearchSlice, owner: str, body: dict[str, Any]) -> httpx.Response:
    """One listing, however often the property service asks to retry (503 no decision yet, 409 in progress):
    the Idempotency-Key makes every retry the same command."""
    headers = {**bearer(owner), "Idempotency-Key": uuid.uuid4().hex}
    async with slice_.properties.client() as client:
        for _ in range(20):
            answer = await client.post("/api/properties", json=body, headers=headers)
            if answer.status_code not in (409, 503):
                break
            await asyncio.sleep(0.5)
    assert answer.status_code == 201, answer.text
    return answer


async def _until_workers_answer(slice_: SearchSlice) -> None:
    """Each test group needs a moment to join: a listing found with its token proves the listings
    worker is in, a saved search listed with its token proves the search projection is."""
    owner = slice_.owner(99)
    made = await create_listing(slice_, owner, {**demo_listing(0, 1).body, "title": "Warm-up listing"})
    async with slice_.client() as client:
        token = {CONSISTENCY: made.headers[CONSISTENCY]}
        await eventually(
            lambda: client.get("/api/search/properties", params={"q": "Warm-up"}, headers=token),
            lambda answer: answer.status_code == 200 and answer.json()["data"]["total"] == 1,
            within=90,
        )
        saved = await client.post(
            "/api/search/save", json={"name": "warm-up", "criteria": {"q": "warm"}}, headers=bearer(owner)
        )
        assert saved.status_code == 201, saved.text
        token = {CONSISTENCY: saved.headers[CONSISTENCY], **bearer(owner)}
        await eventually(
            lambda: client.get(f"/api/search/saved/{owner}", headers=token),
            lambda answer: answer.status_code == 200 and len(answer.json()["data"]["items"]) == 1,
            within=90,
        )


async def create_corpus(slice_: SearchSlice, count: int, seed: int, concurrency: int = 16) -> list[str]:
    """`count` of `ops/demo_data.py`'s listings, by 20 owners of this run, through the property service."""
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, index: int) -> str:
        demo = demo_listing(index, seed)
        owner = slice_.owner(int(demo.owner[-2:]))
        headers = {**bearer(owner), "Idempotency-Key": f"{slice_.run}-{index}"}
        async with gate:
            for attempt in range(8):
                answer = await client.post("/api/properties", json=demo.body, headers=headers)
                if answer.status_code == 201:
                    return str(answer.json()["data"]["id"])
                if answer.status_code not in (409, 503):
                    break
                await asyncio.sleep(min(0.25 * 2**attempt, 4))
        raise AssertionError(f"listing {index}: {answer.status_code} {answer.text[:300]}")

    async with slice_.properties.client() as client:
        return list(await asyncio.gather(*(one(client, index) for index in range(count))))
