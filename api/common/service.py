"""The composition root: one FastAPI app per service, wired with exactly the clients it uses.

Nothing is opened at import; the `lifespan` builds clients from `get_settings()`, keeps them on
`app.state` (`producer`, `pg_pool`, `redis`, `opensearch`) and closes them on shutdown. A dependency
that is down does not stop the service starting: `/ready` answers 503 naming it until it is back.
"""

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Literal, get_args

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from opensearchpy import AsyncOpenSearch
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from api.common import own_writes
from api.common.commands import CommandBus
from api.common.contract import publish_contract
from api.common.errors import error_response, field_error, install_error_handlers
from api.common.fast_reads import FastRead, FastReads
from api.common.kafka import EventProducer
from api.common.logs import RequestLogMiddleware, configure_logging
from api.common.metrics import observe_request
from api.common.readiness import (
    Check,
    kafka_check,
    opensearch_check,
    postgres_check,
    probe_all,
    redis_check,
)
from api.common.reads import QueryPools
from api.common.redis_gets import RedisGets
from api.common.request_guard import RequestGuard
from api.common.responses import ok
from api.common.revocation import deny_list_check
from api.common.shared_answers import SharedAnswers
from api.common.status import LogEnds, ReadModels, add_status_routes
from config.settings import Settings, get_settings

Dependency = Literal["kafka", "postgres", "redis", "opensearch"]
DEPENDENCIES: frozenset[str] = frozenset(get_args(Dependency))


async def _open_clients(
    app: FastAPI, name: str, uses: frozenset[str], settings: Settings, stack: AsyncExitStack
) -> None:
    checks: list[Check] = []
    timeout = settings.ready_timeout_seconds
    if "kafka" in uses:
        producer = EventProducer(settings.kafka_bootstrap, client_id=f"hyderabad-{name}")
        stack.push_async_callback(producer.stop)
        await producer.start()
        app.state.producer = producer
        checks.append(kafka_check(producer))
    if "postgres" in uses:
        pool = AsyncConnectionPool(
            settings.postgres_dsn,
            open=False,
            name=f"{name}-pool",
            min_size=1,
            max_size=settings.postgres_pool_max,
            kwargs={"connect_timeout": max(2, math.ceil(timeout))},
            # Validate before lending, so connections killed by a Postgres restart are replaced.
            check=AsyncConnectionPool.check_connection,
            timeout=10.0,
            # psycopg_pool backs off 1, 2, 4, 8 s... while reconnecting; giving up after 5 s keeps the gap
            # short, and the next request starts a fresh attempt, so a returning Postgres is seen quickly.
            reconnect_timeout=5.0,
        )
        stack.push_async_callback(pool.close)
        await pool.open(wait=False)
        app.state.pg_pool = pool
        checks.append(postgres_check(pool, timeout))
        await _open_query_pools(app, name, pool, settings, stack)
    if "redis" in uses:
        client = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            health_check_interval=30,
            # One quick retry covers a pooled socket that died with a Redis restart.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
        )
        stack.push_async_callback(client.aclose)
        app.state.redis = client
        # The fast reads' one GET (api/common/fast_reads.py): pipelined on a connection of its own where the
        # URL is plain TCP, else redis-py's.
        gets = RedisGets.for_url(settings.redis_url, timeout)
        if gets is not None:
            stack.push_async_callback(gets.aclose)
        app.state.redis_get = gets.get if gets is not None else client.get
        # Logged-out access tokens are refused by every service, not only the one that logged them out.
        app.state.is_revoked = deny_list_check(client)
        checks.append(redis_check(client))
    if "opensearch" in uses:
        search = AsyncOpenSearch(hosts=[settings.opensearch_url], timeout=10, max_retries=1)
        stack.push_async_callback(search.close)
        app.state.opensearch = search
        checks.append(opensearch_check(search))
    app.state.readiness_checks = checks
    if app.state.read_models is not None:
        log_ends = LogEnds(settings.kafka_bootstrap)
        stack.push_async_callback(log_ends.stop)
        app.state.log_ends = log_ends


async def _open_query_pools(
    app: FastAPI, name: str, primary: AsyncConnectionPool, settings: Settings, stack: AsyncExitStack
) -> None:
    """Queries read the replica when there is one and it keeps up (api/common/reads.py); its absence or
    failure is no reason for `/ready` to refuse: the primary serves them then."""
    replica = None
    if settings.postgres_replica_dsn:
        replica = AsyncConnectionPool(
            settings.postgres_replica_dsn,
            open=False,
            name=f"{name}-replica-pool",
            min_size=1,
            max_size=settings.postgres_pool_max,
            kwargs={"connect_timeout": 2},
            check=AsyncConnectionPool.check_connection,
            timeout=10.0,
            reconnect_timeout=5.0,
        )
        stack.push_async_callback(replica.close)
        await replica.open(wait=False)
    pools = QueryPools(
        primary,
        replica,
        max_lag_seconds=settings.postgres_replica_max_lag_seconds,
        check_seconds=settings.postgres_replica_check_seconds,
    )
    app.state.query_pools = pools
    if replica is not None:
        watcher = asyncio.create_task(pools.watch(), name=f"{name}-replica-watch")

        async def stop_watching() -> None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

        stack.push_async_callback(stop_watching)


async def _start_command_bus(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> None:
    bus = CommandBus(app.state.producer, settings.kafka_bootstrap, settings.command_wait_seconds)
    await bus.start()
    stack.push_async_callback(bus.stop)
    app.state.commands = bus


def _add_probes(app: FastAPI, name: str) -> None:
    @app.get("/health", tags=["probes"], summary="Liveness: the process answers")
    async def health() -> JSONResponse:
        return ok({"service": name, "status": "up"}, "alive")

    @app.get(
        "/ready",
        tags=["probes"],
        summary="Readiness: Kafka and this service's stores answer",
        responses={503: {"description": "A dependency is down; `errors` names each one"}},
    )
    async def ready(request: Request) -> JSONResponse:
        settings: Settings = request.app.state.settings
        results = await probe_all(request.app.state.readiness_checks, settings.ready_timeout_seconds)
        down = {dependency: why for dependency, why in results.items() if why}
        if down:
            names = ", ".join(down)
            verb = "is" if len(down) == 1 else "are"
            errors = [field_error(dependency, why) for dependency, why in down.items()]
            return error_response(503, f"{names} {verb} unavailable", errors)
        return ok(dict.fromkeys(results, "up"), "ready")


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_service(
    name: str,
    *,
    title: str,
    description: str,
    uses: Iterable[Dependency],
    sends_commands: bool = False,
    read_models: ReadModels | None = None,
    fast_reads: Sequence[FastRead] = (),
    shared_answers: Collection[str] = (),
    version: str = "0.1.0",
    settings: Settings | None = None,
) -> FastAPI:
    used = frozenset(uses)
    if sends_commands and "kafka" not in used:
        raise ValueError("a service that sends commands uses kafka")
    if not used <= DEPENDENCIES:
        raise ValueError(f"unknown dependencies {sorted(used - DEPENDENCIES)}; known: {sorted(DEPENDENCIES)}")
    if read_models is not None and not {"kafka", "postgres"} <= used:
        raise ValueError("a service with read models uses kafka and postgres (log ends and checkpoints)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or get_settings()
        configure_logging(name)
        app.state.settings = resolved
        async with AsyncExitStack() as stack:
            await _open_clients(app, name, used, resolved, stack)
            if sends_commands:
                await _start_command_bus(app, resolved, stack)
            yield

    app = FastAPI(
        title=title,
        description=f"{description}\n\n{own_writes.OPENAPI_RULE}",
        version=version,
        lifespan=lifespan,
        # An operation is named by its route function (`create_property`), the name a generated client gives
        # it, rather than FastAPI's function-path-method (`create_property_api_properties_post`).
        generate_unique_id_function=_operation_id,
    )
    app.state.service_name = name
    app.state.uses = used
    app.state.is_revoked = None  # the lifespan sets the Redis deny-list check when the service uses Redis
    app.state.read_models = read_models
    # Read here, not in the lifespan: middleware is fixed before the app starts (metrics off only to measure
    # their cost).
    fixed = settings or get_settings()
    with_metrics = fixed.metrics_enabled
    install_error_handlers(app)
    app.add_middleware(own_writes.RememberOwnWrites)
    app.add_middleware(RequestGuard)  # before the body is read: size, token present, what no store holds
    if fast_reads:
        # A plain anonymous GET of these routes skips the guard (it has nothing to guard) and FastAPI's router.
        app.add_middleware(FastReads, reads=fast_reads)
    if shared_answers:
        # Outside the fast reads and the guard: a shared answer skips them too (api/common/shared_answers.py,
        # which also owns the rule that 0 seconds shares nothing).
        app.add_middleware(SharedAnswers, paths=shared_answers, seconds=fixed.shared_answer_seconds)
    # Added last, so outermost: it logs (and counts) the refusals too.
    app.add_middleware(RequestLogMiddleware, observe=observe_request if with_metrics else None)
    _add_probes(app, name)
    add_status_routes(app, name, with_metrics)
    app.openapi = publish_contract(app)  # type: ignore[method-assign]
    return app
