"""The property service's command side: build a command, send it to the property decider, turn the
decision into the HTTP answer. Routes stay thin; this is where a newcomer follows a command to Kafka.

Route -> `property-commands` (keyed by property id) -> `streams/properties/decider_app.py` ->
`properties` events -> `property-projection` -> Postgres, Redis, OpenSearch.
"""

import re
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from api.common.auth import AccessClaims
from api.common.commands import CommandBus
from api.common.deps import RequestContext
from api.common.errors import ApiError, field_error
from api.common.idempotency import derived_id, fingerprint, idempotent
from api.common.kafka import CONSISTENCY_HEADER
from schemas.envelope import Envelope, new_event
from schemas.ids import new_id
from schemas.outcomes import CommandOutcome, Verdict
from schemas.registry import EventData
from schemas.topics import PROPERTY_COMMANDS

IF_MATCH = "If-Match"
_VERSION_TAG = re.compile(r'^(?:W/)?"?(\d{1,9})"?$')


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    match = _VERSION_TAG.match(value.strip())
    if not match:
        raise ApiError(422, "Invalid If-Match", [field_error(IF_MATCH, 'expected the ETag of a GET, e.g. "3"')])
    return int(match[1])


def command_ids(scope: str, user: AccessClaims, idempotency_key: str | None) -> tuple[str, str]:
    """(command id, new aggregate id): derived from the Idempotency-Key when there is one, so a retry
    names the very same command and the decider applies it at most once."""
    if idempotency_key is None:
        return new_id("cmd"), new_id("prop")
    return (
        derived_id("cmd", scope, user.subject, idempotency_key),
        derived_id("prop", scope, user.subject, idempotency_key),
    )


def command(
    kind: str, property_id: str, data: EventData, user: AccessClaims, ctx: RequestContext, command_id: str
) -> Envelope:
    return new_event(
        type=kind,
        subject=property_id,
        data=data.to_wire(),
        service="property",
        userid=user.subject,
        sessionid=ctx.session_id,
        correlationid=ctx.correlation_id,
        event_id=command_id,
    )


async def decide(bus: CommandBus, envelope: Envelope) -> CommandOutcome:
    outcome = await bus.send(PROPERTY_COMMANDS.name, envelope)
    if outcome.verdict == Verdict.REJECTED:
        raise ApiError(
            outcome.status or 422,
            outcome.message,
            [field_error(problem.field, problem.message) for problem in outcome.errors],
        )
    return outcome


def decision_headers(outcome: CommandOutcome) -> dict[str, str]:
    headers = {"ETag": etag(outcome.version or 0)}
    if outcome.positions:
        headers[CONSISTENCY_HEADER] = ",".join(outcome.positions)
    return headers


async def once(
    redis: Redis, request: Request, *, scope: str, user: AccessClaims, key: str | None, body: Any, answer: Any
) -> JSONResponse:
    """The answer of `answer()`, once per Idempotency-Key (the request's method, path and `body` must match)."""
    return await idempotent(
        redis,
        scope=scope,
        user_id=user.subject,
        key=key,
        request_fingerprint=fingerprint(request.method, request.url.path, body),
        answer=answer,
    )
