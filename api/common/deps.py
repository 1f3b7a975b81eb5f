"""FastAPI dependencies shared by every service: who is calling, and the context their events carry.

    async def create(body: PropertyIn, user: CurrentUser, ctx: Context) -> ...

The clients the composition root (`api/common/service.py`) opened are taken the same way
(`pool: PgPool`, `redis: RedisClient`, ...), never from `request.app.state` in a route. A hot query
route takes `query: QueryCall` instead: the caller, what it waits for and the clients it reads, in one
dependency (FastAPI's cost is per dependency).

`X-User-Id`, when sent, must equal the token's subject (403 otherwise). `X-Session-Id` and the
correlation id travel onto every event the request produces. `ConsistencyToken` is what a query waits
for: the header's positions and the signed-in caller's own latest writes.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opensearchpy import AsyncOpenSearch
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from api.common import own_writes
from api.common.auth import AccessClaims, Unauthorized, verify_access_token
from api.common.client_address import request_address
from api.common.commands import CommandBus
from api.common.contract import IDEMPOTENCY_DESCRIPTION
from api.common.errors import ApiError, field_error
from api.common.idempotency import IDEMPOTENCY_HEADER
from api.common.kafka import CONSISTENCY_HEADER, EventProducer
from api.common.reads import RequestReads, query_pool
from config.settings import Settings
from schemas.ids import new_id
from storage import BlobStore
from storage.web import app_blob_store

# Declares the scheme in OpenAPI (the "Authorize" button); we raise our own 401s, hence no auto_error.
bearer_scheme = HTTPBearer(auto_error=False, description="Access token from POST /api/auth/login")

# User and session ids are ours (`user-…`); anything else in these headers is refused, not logged.
ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
ID_MAX_LENGTH = 128
# ---- path and header types used by several services ----

UserId = Annotated[str, Path(pattern=r"^user-[A-Za-z0-9._-]{1,64}$", description="A user id, `user-…`")]
PROPERTY_ID_PATTERN = r"^prop-[A-Za-z0-9]{1,64}$"
PropertyId = Annotated[str, Path(pattern=PROPERTY_ID_PATTERN, description="A property id, `prop-…`")]
FileId = Annotated[str, Path(pattern=r"^file-[A-Za-z0-9]{1,64}$", description="A file id, `file-…`")]
IdempotencyKey = Annotated[
    str | None, Header(alias=IDEMPOTENCY_HEADER, max_length=200, description=IDEMPOTENCY_DESCRIPTION)
]
IfMatch = Annotated[
    str | None, Header(alias="If-Match", max_length=40, description='The `ETag` of a GET, e.g. `"3"`: refused if stale')
]
UserIdHeader = Annotated[str | None, Header(alias="X-User-Id", max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
SessionIdHeader = Annotated[str | None, Header(alias="X-Session-Id", max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


async def _caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None, x_user_id: str | None
) -> AccessClaims | None:
    if credentials is None:
        if "authorization" in request.headers:
            raise Unauthorized("Authorization header must be 'Bearer <access token>'")
        if x_user_id is not None:
            raise Unauthorized("X-User-Id needs an access token for that user")
        return None
    state = request.app.state
    claims = await verify_access_token(
        credentials.credentials,
        settings=getattr(state, "settings", None),
        is_revoked=getattr(state, "is_revoked", None),
    )
    if x_user_id is not None and x_user_id != claims.subject:
        raise ApiError(
            403,
            "X-User-Id does not match the access token",
            [field_error("X-User-Id", "must equal the subject of the access token")],
        )
    own_writes.attribute_to(request, own_writes.user_writer(claims.subject))
    return claims


async def optional_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    x_user_id: UserIdHeader = None,
) -> AccessClaims | None:
    return await _caller(request, credentials, x_user_id)


async def current_user(user: Annotated[AccessClaims | None, Depends(optional_user)]) -> AccessClaims:
    if user is None:
        raise Unauthorized("Missing access token")
    return user


CurrentUser = Annotated[AccessClaims, Depends(current_user)]
OptionalUser = Annotated[AccessClaims | None, Depends(optional_user)]

ConsistencyHeader = Annotated[
    str | None,
    Header(
        alias=CONSISTENCY_HEADER,
        max_length=4000,
        description=(
            "The `X-Consistency-Token` of a command's answer: the query waits (bounded) until its store has "
            "applied those positions. A signed-in caller's own latest writes are waited for without it; "
            "send it for writes made elsewhere (another device, anonymously)."
        ),
    ),
]


async def consistency_positions(user: OptionalUser, sent: ConsistencyHeader = None) -> str | None:
    """What a query waits for: the token sent, and the signed-in caller's own latest writes."""
    return own_writes.with_own_writes(sent, user.own_writes if user else ())


ConsistencyToken = Annotated[str | None, Depends(consistency_positions)]


@dataclass(frozen=True)
class QueryContext:
    """Everything a query route reads with, from one dependency (`query: QueryCall`): FastAPI's cost is per
    dependency, tens of microseconds each, and a GET by id used seven (the caller, the token, the
    consistency wait, the reads, Redis, the settings) for a few hundred microseconds of its own work.
    The same parameters (`Authorization`, `X-User-Id`, `X-Consistency-Token`) and refusals as
    `OptionalUser` + `ConsistencyToken`; a route taking `QueryCall` takes neither of those."""

    user: AccessClaims | None
    # What the query waits for: the token sent, and the signed-in caller's own latest writes.
    consistency: str | None
    reads: RequestReads
    settings: Settings
    request: Request

    @property
    def redis(self) -> Redis:
        redis: Redis = self.request.app.state.redis
        return redis

    @property
    def search(self) -> AsyncOpenSearch:
        search: AsyncOpenSearch = self.request.app.state.opensearch
        return search

    @property
    def primary(self) -> AsyncConnectionPool:
        """The primary Postgres, for what a query must read there (a snapshot being made, a fallback)."""
        pool: AsyncConnectionPool = self.request.app.state.pg_pool
        return pool


@dataclass(frozen=True)
class SignedInQueryContext(QueryContext):
    """A query for signed-in callers only (`query: SignedInQueryCall`): as `CurrentUser`, 401 without a token."""

    user: AccessClaims


async def query_context(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    sent: ConsistencyHeader = None,  # before X-User-Id, as the contract has always listed them
    x_user_id: UserIdHeader = None,
) -> QueryContext:
    user = await _caller(request, credentials, x_user_id)
    return QueryContext(
        user=user,
        consistency=own_writes.with_own_writes(sent, user.own_writes if user else ()),
        reads=query_pool(request),
        settings=request.app.state.settings,
        request=request,
    )


QueryCall = Annotated[QueryContext, Depends(query_context)]


async def signed_in_query_context(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    x_user_id: UserIdHeader = None,  # before X-Consistency-Token, as the contract lists them where CurrentUser is
    sent: ConsistencyHeader = None,
) -> SignedInQueryContext:
    user = await _caller(request, credentials, x_user_id)
    if user is None:
        raise Unauthorized("Missing access token")
    return SignedInQueryContext(
        user=user,
        consistency=own_writes.with_own_writes(sent, user.own_writes),
        reads=query_pool(request),
        settings=request.app.state.settings,
        request=request,
    )


SignedInQueryCall = Annotated[SignedInQueryContext, Depends(signed_in_query_context)]


@dataclass(frozen=True)
class RequestContext:
    """What a route copies onto the events it produces (`userid`, `sessionid`, `correlationid`)."""

    user_id: str | None
    role: str | None
    session_id: str | None
    correlation_id: str


async def request_context(
    request: Request,
    user: OptionalUser,
    x_session_id: SessionIdHeader = None,
) -> RequestContext:
    return RequestContext(
        user_id=user.subject if user else None,
        role=user.role if user else None,
        session_id=x_session_id or (user.session_id if user else None),
        # The request-log middleware sets it from X-Correlation-Id (or fresh) for the log line too.
        correlation_id=getattr(request.state, "correlation_id", None) or new_id("corr"),
    )


Context = Annotated[RequestContext, Depends(request_context)]


# ---- the clients the lifespan opened (api/common/service.py) ----


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _pg_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.pg_pool


async def _query_reads(request: Request) -> RequestReads:
    return query_pool(request)


async def _redis(request: Request) -> Redis:
    return request.app.state.redis


async def _opensearch(request: Request) -> AsyncOpenSearch:
    return request.app.state.opensearch


async def _producer(request: Request) -> EventProducer:
    return request.app.state.producer


async def _command_bus(request: Request) -> CommandBus:
    return request.app.state.commands


async def _blob_store(request: Request) -> BlobStore:
    return app_blob_store(request)


async def _client_address(request: Request) -> str:
    """The client's address as rate limits count it (`HI_TRUSTED_PROXIES`: which forwarded hops to believe)."""
    return request_address(request)


# Async on purpose: FastAPI runs a plain `def` dependency in a thread, a hop per request for nothing.
AppSettings = Annotated[Settings, Depends(_settings)]
PgPool = Annotated[AsyncConnectionPool, Depends(_pg_pool)]
# What queries read: the replica while it keeps up, else the primary, one choice per request (api/common/reads.py).
QueryReads = Annotated[RequestReads, Depends(_query_reads)]
RedisClient = Annotated[Redis, Depends(_redis)]
SearchClient = Annotated[AsyncOpenSearch, Depends(_opensearch)]
Producer = Annotated[EventProducer, Depends(_producer)]
Commands = Annotated[CommandBus, Depends(_command_bus)]
Blobs = Annotated[BlobStore, Depends(_blob_store)]
ClientAddress = Annotated[str, Depends(_client_address)]
