"""The user slice running for real: the registry, account and projection workers, the user service,
and the property slice beside it (a user's listings, recounts and delisting on account deletion)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.services import by_name
from tests.support.processes import WorkerProcess
from tests.support.properties import PropertySlice, running_property_slice
from tests.support.services import ServiceProcess
from tests.support.waiting import eventually

PASSWORD = "Gachibowli-Villa-2024"


def user_workers(log_dir: Path) -> list[WorkerProcess]:
    return [
        WorkerProcess("streams.users.registry_app", {}, log_dir / "user-registry.log"),
        WorkerProcess("streams.users.account_app", {}, log_dir / "user-account.log"),
        WorkerProcess("streams.users.projection_worker", {}, log_dir / "user-projection.log"),
    ]


def an_email() -> str:
    return f"priya.{uuid.uuid4().hex[:10]}@example.in"


def registration(email: str | None = None, **overrides: str) -> dict[str, str]:
    return {"email": email or an_email(), "password": PASSWORD, "name": "Priya Reddy", "phone": "+919876543210"} | (
        overrides
    )


@dataclass
class UserSlice:
    service: ServiceProcess
    workers: list[WorkerProcess]
    properties: PropertySlice

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.service.url, timeout=30)


# The tests' client is a proxy we trust, so each test can speak for addresses of its own; and suites on
# one Redis register and log in many users from one address (junk included), so the per-address limits
# are out of reach here (the limit tests run a user service with low limits of their own).
TEST_SERVICE_ENV = {
    "HI_TRUSTED_PROXIES": "127.0.0.1",
    "HI_REGISTRATION_MAX_PER_ADDRESS": "1000000000",
    "HI_REGISTRATION_MAX_PER_EMAIL": "1000000000",
    "HI_LOGIN_ADDRESS_FREE_FAILURES": "1000000000",
}


@asynccontextmanager
async def running_user_slice(log_dir: Path, env: dict[str, str]) -> AsyncIterator[UserSlice]:
    workers = user_workers(log_dir)
    service = ServiceProcess(by_name("user"), log_dir / "user-service.log", {**env, **TEST_SERVICE_ENV})
    async with running_property_slice(log_dir, env) as properties:
        try:
            for worker in workers:
                worker.start()
            await service.start()
            slice_ = UserSlice(service, workers, properties)
            await _until_deciders_answer(slice_)
            yield slice_
        finally:
            service.stop()
            for worker in workers:
                worker.stop()


async def _until_deciders_answer(slice_: UserSlice) -> None:
    """Both deciders need a moment to join their groups (a registration that gets a 201 proves it), and
    the projection may first have a backlog of `users` to work through (the archive tests write there):
    the registration readable with its consistency token proves it has caught up."""
    async with slice_.client() as client:
        for _ in range(60):
            answer = await client.post("/api/auth/register", json=registration())
            if answer.status_code == 201:
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError("the user deciders never answered; see their logs")
        token = {"X-Consistency-Token": answer.headers["X-Consistency-Token"]}
        location = answer.headers["Location"]
        await eventually(lambda: client.get(location, headers=token), lambda r: r.status_code == 200, within=120)
