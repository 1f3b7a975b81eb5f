"""The six services: name, ASGI app and port. The runner, tests and docs read this table."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    app: str  # "module:attribute", as uvicorn takes it
    port: int

    @property
    def module(self) -> str:
        return self.app.split(":", 1)[0]


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
