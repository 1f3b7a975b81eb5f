"""Each of the six services, run as its own uvicorn process against the real stack, is alive, ready
(every dependency it uses answers), and documents itself. (The runner of all six together is
tested in tests/e2e/test_system_runs.py.)"""

import asyncio
import importlib
from collections.abc import AsyncIterator

import httpx
import pytest

from api.services import SERVICES, ServiceSpec
from tests.support.services import ServiceProcess

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def running(stack, tmp_path_factory) -> AsyncIterator[dict[str, ServiceProcess]]:
    logs = tmp_path_factory.mktemp("service-logs")
    services = {spec.name: ServiceProcess(spec, logs / f"{spec.name}.log", stack.as_env()) for spec in SERVICES}
    try:
        await asyncio.gather(*(service.start() for service in services.values()))
        yield services
    finally:
        for service in services.values():
            service.stop()


def uses(spec: ServiceSpec) -> set[str]:
    return set(importlib.import_module(spec.module).app.state.uses)


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
async def test_service_is_alive_ready_and_documented(running, spec):
    service = running[spec.name]
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        health = await client.get("/health")
        assert health.status_code == 200
        assert health.json()["data"]["service"] == spec.name

        ready = await client.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"success": True, "message": "ready", "data": dict.fromkeys(uses(spec), "up")}
        assert "kafka" in ready.json()["data"]

        openapi = await client.get("/openapi.json")
        assert openapi.status_code == 200
        assert spec.name in openapi.json()["info"]["title"]
        assert openapi.json()["info"]["description"]
        assert (await client.get("/docs")).status_code == 200
