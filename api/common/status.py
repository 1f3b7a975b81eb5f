"""How far behind each read model a service serves is: `/status`, and the staleness gauges of `/metrics`.

A read model is a projection's store, named as in `projection_checkpoints`, and the topics it applies.
Its lag is, over those topics' partitions, the log end (the next offset Kafka will write) minus the
offset after the newest one applied; a partition it never applied counts whole. Its last-event age is
the time since its newest checkpoint was written, which a projection does with every batch it applies:
a growing age with lag 0 is a quiet topic, a growing age with a growing lag is a stopped projection.
One query and one ListOffsets request per call, whatever the number of read models.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from api.common.errors import DOWN_ERRORS, ApiError, DependencyUnavailable
from api.common.metrics import READ_MODEL_AGE, READ_MODEL_LAG, exposition
from api.common.responses import ok
from schemas.topics import by_name

log = logging.getLogger("api.status")


@dataclass(frozen=True)
class ReadModel:
    name: str  # its `projection_checkpoints.projection`
    topics: frozenset[str]


# A service's read models may depend on its settings (a test's alias) or its stores (the live history
# generation), so a service names them with a function of the request.
ReadModels = Callable[[Request], Awaitable[Sequence[ReadModel]]]


def fixed(*models: ReadModel) -> ReadModels:
    async def resolve(request: Request) -> Sequence[ReadModel]:
        return models

    return resolve


@dataclass(frozen=True)
class ReadModelStatus:
    name: str
    topics: tuple[str, ...]
    lag: int
    last_event_age_seconds: float | None

    def body(self) -> dict[str, Any]:
        return {
            "readModel": self.name,
            "topics": list(self.topics),
            "lag": self.lag,
            "lastEventAgeSeconds": self.last_event_age_seconds,
        }


class LogEnds:
    """Kafka's log end offsets, read with a consumer outside any group (it never joins or commits)."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
        self._admin: AIOKafkaAdminClient | None = None
        self._started = False
        self._lock = asyncio.Lock()

    async def _ensure_started(self) -> None:
        # Started on first use, so a service started while Kafka is away still starts.
        async with self._lock:
            if not self._started:
                await self._consumer.start()
                self._started = True

    async def of(self, topics: frozenset[str]) -> dict[tuple[str, int], int]:
        await self._ensure_started()
        partitions = [TopicPartition(t, p) for t in sorted(topics) for p in await self._partitions(t)]
        ends = await self._consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def _partitions(self, topic: str) -> list[int]:
        """From the catalogue; a topic outside it (a test's, a benchmark's) from Kafka's metadata."""
        with suppress(KeyError):
            return list(range(by_name(topic).partitions))
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
            await self._admin.start()
        return await described_partitions(self._admin, topic)

    async def stop(self) -> None:
        if self._admin is not None:
            with suppress(Exception):
                await self._admin.close()
        if self._started:
            with suppress(Exception):
                await self._consumer.stop()


async def described_partitions(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    [described] = await admin.describe_topics([topic])
    return sorted(p["partition"] for p in described["partitions"])


_CHECKPOINTS = """
SELECT projection, topic, partition, "offset", extract(epoch FROM now() - updated_at)::float8
FROM projection_checkpoints WHERE projection = ANY(%s)
"""


async def read_model_status(
    pool: AsyncConnectionPool, ends: dict[tuple[str, int], int], models: Sequence[ReadModel]
) -> list[ReadModelStatus]:
    """`ends`: the log end offsets of the models' topics (`LogEnds.of`)."""
    async with pool.connection() as conn:
        cursor = await conn.execute(_CHECKPOINTS, ([m.name for m in models],))
        rows = await cursor.fetchall()
    applied: dict[tuple[str, str, int], int] = {}
    newest: dict[str, float] = {}
    for projection, topic, partition, offset, age in rows:
        applied[(projection, topic, partition)] = offset
        newest[projection] = min(age, newest.get(projection, age))
    return [
        ReadModelStatus(
            model.name,
            tuple(sorted(model.topics)),
            sum(
                max(0, end - applied.get((model.name, topic, partition), -1) - 1)
                for (topic, partition), end in ends.items()
                if topic in model.topics
            ),
            round(max(0.0, newest[model.name]), 3) if model.name in newest else None,
        )
        for model in models
    ]


async def _statuses(request: Request) -> list[ReadModelStatus]:
    state = request.app.state
    within = state.settings.ready_timeout_seconds
    resolve: ReadModels | None = state.read_models
    models = await resolve(request) if resolve is not None else ()
    if not models:
        return []
    try:
        ends = await asyncio.wait_for(state.log_ends.of(frozenset().union(*(m.topics for m in models))), within)
    except TimeoutError:
        raise DependencyUnavailable("kafka", f"log end offsets not read within {within:g}s") from None
    except KafkaError as exc:
        raise DependencyUnavailable("kafka", "not reachable") from exc
    try:
        return await asyncio.wait_for(read_model_status(state.pg_pool, ends, models), within)
    except TimeoutError:
        raise DependencyUnavailable("postgres", f"checkpoints not read within {within:g}s") from None


def add_status_routes(app: FastAPI, name: str, with_metrics: bool) -> None:
    @app.get(
        "/status",
        tags=["probes"],
        summary="Staleness: per read model this service serves, its lag and the age of its last event",
        responses={503: {"description": "Kafka or Postgres did not answer; `errors` names it"}},
    )
    async def status(request: Request) -> JSONResponse:
        statuses = await _statuses(request)
        body: dict[str, Any] = {"service": name, "readModels": [s.body() for s in statuses]}
        pools = getattr(request.app.state, "query_pools", None)
        if pools is not None:
            body["reads"] = pools.status()  # which Postgres queries read: the replica, or why the primary
        return ok(body, "status")

    if not with_metrics:
        return

    @app.get("/metrics", tags=["probes"], summary="Prometheus metrics of this service", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        try:
            for one in await _statuses(request):
                READ_MODEL_LAG.labels(one.name).set(one.lag)
                if one.last_event_age_seconds is not None:
                    READ_MODEL_AGE.labels(one.name).set(one.last_event_age_seconds)
        except (ApiError, *DOWN_ERRORS) as exc:
            # The request and command series are worth a scrape even while a store is away.
            log.warning("read model staleness not refreshed: %s", type(exc).__name__)
        body, content_type = exposition()
        return Response(body, media_type=content_type)
