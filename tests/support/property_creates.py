"""Listings created through the property service of a private stack, for the restart tests
(tests/chaos): the property decider and projection started, the service started and answering a
create with 201, then `create(n)` and the service's client handed to the test; everything stopped after.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from api.common.auth import issue_access_token
from api.services import by_name
from tests.support.processes import WorkerProcess
from tests.support.property_projection import listing
from tests.support.services import ServiceProcess
from tests.support.waiting import eventually


@dataclass(frozen=True)
class Creating:
    api: httpx.AsyncClient  # the property service
    create: Callable[[int], Awaitable[httpx.Response]]  # POST /api/properties of listing(n), signed in


@asynccontextmanager
async def creating_listings(env: dict[str, str], logs: Path, owner_tag: str) -> AsyncIterator[Creating]:
    workers = [
        WorkerProcess("streams.properties.decider_app", env, logs / "property-decider.log"),
        WorkerProcess("streams.properties.projection_worker", env, logs / "property-projection.log"),
    ]
    service = ServiceProcess(by_name("property"), logs / "property-service.log", env)
    owner = f"user-{owner_tag}-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {issue_access_token(owner, 'USER')}"}
    for worker in workers:
        worker.start()
    try:
        await service.start(within=120)  # an import-heavy service on a machine shared with other suites
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as api:

            async def create(n: int) -> httpx.Response:
                return await api.post("/api/properties", json=listing(n), headers=auth)

            async def status() -> int | None:
                try:
                    return (await create(0)).status_code
                except httpx.TimeoutException:
                    return None

            # Created once the decider has its partitions and the service its outcome follower.
            await eventually(status, lambda code: code == 201, within=240, every=0.5)
            yield Creating(api, create)
    finally:
        service.stop()
        for worker in workers:
            worker.stop()


async def in_postgres(dsn: str, ids: set[str]) -> set[str]:
    """Which of these listings the property projection has written."""
    async with await psycopg.AsyncConnection.connect(dsn) as pg:
        cursor = await pg.execute("SELECT id FROM properties WHERE id = ANY(%s)", (sorted(ids),))
        return {row[0] for row in await cursor.fetchall()}
