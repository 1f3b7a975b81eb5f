"""The six services: name, ASGI app and port. The runner, tests and docs read this table."""

import sys
from dataclasses import dataclass

# Uvicorn's own access log is off: the request-log middleware (api/common/logs.py) already writes a
# structured line per write, refusal and slow read, and uvicorn's unstructured one would cost CPU on every
# request. The event loop and HTTP parser are named rather than left to `auto`: uvloop and httptools (C, from
# `uvicorn[standard]`) are the cheap pair, and a service started without them should fail, not
# quietly fall back to asyncio and h11.
UVICORN_OPTIONS = ("--no-access-log", "--loop", "uvloop", "--http", "httptools")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    app: str  # "module:attribute", as uvicorn takes it
    port: int

    @property
    def module(self) -> str:
        return self.app.split(":", 1)[0]

    def command(self, host: str = "127.0.0.1", port: int | None = None) -> list[str]:
        """How an operator starts it: its own uvicorn process."""
        return [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--host",
            host,
            "--port",
            str(port or self.port),
            *UVICORN_OPTIONS,
        ]


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("user", "api.user.main:app", 8081),
    ServiceSpec("property", "api.property.main:app", 8082),
    ServiceSpec("search", "api.search.main:app", 8083),
    ServiceSpec("user-history", "api.user_history.main:app", 8084),
    ServiceSpec("notification", "api.notification.main:app", 8085),
    ServiceSpec("file", "api.file.main:app", 8086),
)


def by_name(name: str) -> ServiceSpec:
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise KeyError(f"no service {name!r}; known: {', '.join(s.name for s in SERVICES)}")
