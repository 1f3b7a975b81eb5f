"""`/ready` follows a dependency down and back up by itself: stop Postgres under a running service,
see 503 naming postgres within 5 s, start it again, see 200, same process throughout."""

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from api.services import by_name
from config.settings import PROJECT_ROOT
from tests.support.services import ServiceProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.stack

STACK = str(PROJECT_ROOT / "ops" / "stack.sh")


async def stack_sh(*args: str) -> None:
    await asyncio.to_thread(subprocess.run, [STACK, *args], check=True)


@pytest.fixture
async def service(stack, tmp_path) -> AsyncIterator[ServiceProcess]:
    service = ServiceProcess(by_name("property"), tmp_path / "property.log", stack.as_env())
    await service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
async def client(service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        await eventually(lambda: client.get("/ready"), lambda r: r.status_code == 200, within=30)
        yield client


async def test_ready_reports_postgres_down_and_recovers_without_a_restart(service, client):
    pid = service.process.pid
    await stack_sh("stop", "postgres")
    try:
        stopped_at = time.monotonic()
        down = await eventually(lambda: client.get("/ready"), lambda r: r.status_code == 503, within=5)
        assert time.monotonic() - stopped_at <= 5
        body = down.json()
        assert body["success"] is False
        assert body["message"] == "postgres is unavailable"
        assert [e["field"] for e in body["errors"]] == ["postgres"]
    finally:
        await stack_sh("start", "postgres")

    back = await eventually(lambda: client.get("/ready"), lambda r: r.status_code == 200, within=30)
    assert back.json()["data"]["postgres"] == "up"
    assert service.alive and service.process.pid == pid


async def test_a_connection_killed_by_a_postgres_restart_does_not_fail_the_next_check(client):
    # Nothing asks between stop and start, so the pool still holds the dead connection; it must be
    # noticed and replaced before it is lent, not reported as Postgres being down.
    await stack_sh("restart", "postgres")
    first = await client.get("/ready")
    assert first.status_code == 200, first.text
