"""The property slice running for real: the decider, the two projection workers and the property service.

Workers use their real consumer groups (their Faust table changelogs are named after them and are part
of the topic catalogue); the service runs on a free port so a developer's own `make run` is left alone.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.common.auth import issue_access_token
from api.services import by_name
from tests.support.processes import WorkerProcess
from tests.support.services import ServiceProcess

SEED_BODY = {
    "title": "3BHK Apartment",
    "location": "Gachibowli",
    "price": 9500000,
    "propertyType": "APARTMENT",
    "bedrooms": 3,
    "bathrooms": 2,
}


def bearer(user_id: str, role: str = "USER") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(user_id, role)}"}


def property_workers(log_dir: Path) -> list[WorkerProcess]:
    return [
        WorkerProcess("streams.properties.decider_app", {}, log_dir / "property-decider.log"),
        WorkerProcess("streams.properties.projection_worker", {}, log_dir / "property-projection.log"),
        WorkerProcess("streams.properties.search_worker", {}, log_dir / "property-search-projection.log"),
    ]


@dataclass
class PropertySlice:
    service: ServiceProcess
    workers: list[WorkerProcess]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.service.url, timeout=15)


@asynccontextmanager
async def running_property_slice(log_dir: Path, env: dict[str, str]) -> AsyncIterator[PropertySlice]:
    workers = property_workers(log_dir)
    service = ServiceProcess(by_name("property"), log_dir / "property-service.log", env)
    try:
        for worker in workers:
            worker.start()
        await service.start()
        slice_ = PropertySlice(service, workers)
        await _until_decider_answers(slice_)
        yield slice_
    finally:
        service.stop()
        for worker in workers:
            worker.stop()


async def _until_decider_answers(slice_: PropertySlice) -> None:
    """The decider needs a moment to join its group; a create that gets a decision proves it is in."""
    async with slice_.client() as client:
        for _ in range(60):
            answer = await client.post("/api/properties", json=SEED_BODY, headers=bearer("user-warmup"))
            if answer.status_code == 201:
                return
            await asyncio.sleep(0.5)
    raise AssertionError("the property decider never answered; see its log")
