"""Running an HTTP service the way an operator does: `uvicorn api.<service>.main:app` in its own process."""

import os
import socket
import subprocess
from pathlib import Path

import httpx

from api.services import ServiceSpec
from config.settings import PROJECT_ROOT
from tests.support.processes import stop_process_group
from tests.support.waiting import eventually


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServiceProcess:
    """One service on a free port (so a developer's own services on 8081..8086 are left alone)."""

    def __init__(self, spec: ServiceSpec, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, within: float = 30) -> None:
        self.launch()
        await eventually(self._health, lambda status: status == 200, within=within)

    def launch(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.spec.command(port=self.port),
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def _health(self) -> int | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.spec.name} exited with {self.process.returncode}; see {self.log_path}")
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
                return (await client.get("/health")).status_code
        except httpx.TransportError:
            return None

    def stop(self) -> None:
        stop_process_group(self.process, grace_seconds=15)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None
