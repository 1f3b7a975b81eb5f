"""Notification endpoints (8085). Commands produce to `notifications` (the delivery reactor sends, the
projection records); queries read the notification projection's stores."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from api.common.auth import AccessClaims
from api.common.consistency import Reader
from api.common.contract import CONSISTENCY_TOKEN, LOCATION, STALE, errors, success_headers
from api.common.deps import (
    AppSettings,
    ConsistencyToken,
    Context,
    CurrentUser,
    IdempotencyKey,
    PgPool,
    Producer,
    QueryReads,
    RedisClient,
    SignedInQueryCall,
    UserId,
)
from api.common.errors import ApiError, field_error
from api.common.idempotency import fingerprint, idempotent
from api.common.kafka import CONSISTENCY_HEADER, EventProducer, consistency_token
from api.common.pagination import PageQuery
from api.common.responses import OrjsonResponse, Success, ok
from api.notification import commands, queries
from api.notification.models import (
    NOTIFICATION_ID_PATTERN,
    BlockedSendersOut,
    BlockOut,
    EmailIn,
    InboxOut,
    MarkedReadOut,
    NotificationDeletedOut,
    NotificationQueuedOut,
    NotificationStateOut,
    PreferencesIn,
    PreferencesOut,
    SmsIn,
)
from config.settings import Settings
from schemas.envelope import format_time, utc_now
from schemas.notifications import (
    NOTIFICATION_DELETED,
    NOTIFICATION_PREFERENCES_UPDATED,
    NOTIFICATION_READ,
    NOTIFICATION_REQUESTED,
    NOTIFICATION_SENDER_BLOCKED,
    NOTIFICATION_SENDER_UNBLOCKED,
    NotificationDeleted,
    NotificationPreferencesUpdated,
    NotificationRead,
    NotificationSenderBlocked,
)

router = APIRouter(prefix="/api/notifications", tags=["notifications"])

NotificationId = Annotated[str, Path(pattern=NOTIFICATION_ID_PATTERN, description="A notification id, `notif-…`")]


def _self_or_admin(user: AccessClaims, user_id: str) -> None:
    if user.subject != user_id and not commands.is_admin(user):
        raise ApiError(403, "Only that user or an admin may see this", [field_error("userId", "not yours")])


async def _require_user(reads: Reader, user: AccessClaims, user_id: str) -> None:
    """Self always exists to themselves (perhaps with an empty inbox); an admin asking about an unknown
    user learns it is unknown."""
    if user.subject != user_id and not await queries.user_exists(reads, user_id):
        raise ApiError(404, f"User {user_id} not found")


@dataclass(frozen=True)
class _Stores:
    """What a queued notification is checked against and produced with."""

    reads: Reader
    pool: AsyncConnectionPool  # the primary: the personal keys a message is sealed with
    redis: Redis
    settings: Settings
    producer: EventProducer


async def _queue(
    request: Request,
    stores: _Stores,
    body: EmailIn | SmsIn,
    user: AccessClaims,
    ctx: Context,
    key: str | None,
    *,
    email: bool,
) -> JSONResponse:
    scope = "notification.email" if email else "notification.sms"
    notification = commands.notification_id(scope, user, key)

    async def answer() -> JSONResponse:
        event = await commands.requested(
            stores.reads, stores.pool, stores.redis, stores.settings, body, user, notification, email=email
        )
        position = await commands.publish(stores.producer, NOTIFICATION_REQUESTED, notification, event, user, ctx)
        state_url = f"/api/notifications/{notification}/state"
        data = {"id": notification, "state": "queued", "stateUrl": state_url}
        return OrjsonResponse(
            {"success": True, "message": "Notification queued", "data": data},
            status_code=202,
            headers={"Location": state_url, CONSISTENCY_HEADER: consistency_token([position])},
        )

    return await idempotent(
        stores.redis,
        scope=scope,
        user_id=user.subject,
        key=key,
        request_fingerprint=fingerprint(request.method, request.url.path, body.model_dump(mode="json")),
        answer=answer,
    )


_QUEUED = {
    "response_model": Success[NotificationQueuedOut],
    "responses": {202: {"headers": success_headers(LOCATION, CONSISTENCY_TOKEN)}, **errors(403, 404, 409, 429)},
}


# ---- commands ----


@router.post("/email", status_code=202, summary="Queue an email to a user (or, admins, to an address)", **_QUEUED)
async def send_email(
    body: EmailIn,
    user: CurrentUser,
    ctx: Context,
    request: Request,
    reads: QueryReads,
    pool: PgPool,
    redis: RedisClient,
    settings: AppSettings,
    producer: Producer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """202 with the notification's id and its state URL. The delivery reactor sends it over SMTP,
    honouring the recipient's quiet hours (and, for system kinds, their channel preferences)."""
    stores = _Stores(reads, pool, redis, settings, producer)
    return await _queue(request, stores, body, user, ctx, idempotency_key, email=True)


@router.post(
    "/sms", status_code=202, summary="Queue an SMS (≤ 480 characters) to a user (or, admins, a number)", **_QUEUED
)
async def send_sms(
    body: SmsIn,
    user: CurrentUser,
    ctx: Context,
    request: Request,
    reads: QueryReads,
    pool: PgPool,
    redis: RedisClient,
    settings: AppSettings,
    producer: Producer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    stores = _Stores(reads, pool, redis, settings, producer)
    return await _queue(request, stores, body, user, ctx, idempotency_key, email=False)


@router.put(
    "/preferences",
    summary="Update one's own preferences (only the fields sent change)",
    response_model=Success[PreferencesOut],
    responses={200: {"headers": CONSISTENCY_TOKEN}},
)
async def update_preferences(
    body: PreferencesIn,
    user: CurrentUser,
    ctx: Context,
    reads: QueryReads,
    settings: AppSettings,
    producer: Producer,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """Changing preferences twice in a row, the second change builds on the first (the caller's own
    writes are waited for; from another session, send the previous answer's `X-Consistency-Token`)."""
    problems = commands.preference_problems(body)
    if problems:
        raise ApiError(422, "Invalid preferences", problems)
    await queries.caught_up(reads, settings, consistency)
    current, _ = await queries.preferences(reads, user.subject)
    updated = commands.merged_preferences(current, body)
    event = NotificationPreferencesUpdated(
        user_id=user.subject,
        channels=updated.channels,
        quiet_hours=updated.quiet_hours,
        time_zone=updated.time_zone,
    )
    position = await commands.publish(producer, NOTIFICATION_PREFERENCES_UPDATED, user.subject, event, user, ctx)
    return ok(
        queries.preferences_document(user.subject, updated, utc_now()),
        "Preferences updated",
        {CONSISTENCY_HEADER: consistency_token([position])},
    )


@router.put(
    "/blocks/{user_id}",
    summary="Take no more messages from a user (idempotent)",
    response_model=Success[BlockOut],
    responses={200: {"headers": CONSISTENCY_TOKEN}, **errors(404)},
)
async def block_sender(
    user_id: UserId, user: CurrentUser, ctx: Context, reads: QueryReads, producer: Producer
) -> JSONResponse:
    """From then on that user's messages are refused with 403 ("does not take messages from you"): they
    learn it when they try, rather than writing into the void; a message of theirs still queued is not
    delivered. Only messages are blocked: the platform's own notifications still arrive."""
    return await _set_block(reads, producer, user, ctx, user_id, blocked=True)


@router.delete(
    "/blocks/{user_id}",
    summary="Take messages from a user again (idempotent)",
    response_model=Success[BlockOut],
    responses={200: {"headers": CONSISTENCY_TOKEN}},
)
async def unblock_sender(
    user_id: UserId, user: CurrentUser, ctx: Context, reads: QueryReads, producer: Producer
) -> JSONResponse:
    return await _set_block(reads, producer, user, ctx, user_id, blocked=False)


@router.get(
    "/blocks",
    summary="The users one has blocked",
    response_model=Success[BlockedSendersOut],
    responses={200: {"headers": STALE}},
)
async def blocked_senders(
    user: CurrentUser, reads: QueryReads, settings: AppSettings, consistency: ConsistencyToken = None
) -> JSONResponse:
    fresh = await queries.caught_up(reads, settings, consistency)
    senders = await queries.blocked_senders(reads, user.subject)
    return ok({"userId": user.subject, "blocked": senders}, "Blocked users", queries.freshness_headers(fresh))


async def _set_block(
    reads: Reader, producer: EventProducer, user: AccessClaims, ctx: Context, sender: str, *, blocked: bool
) -> JSONResponse:
    if sender == user.subject:
        raise ApiError(422, "One cannot block oneself", [field_error("userId", "not yourself")])
    if blocked and not await queries.user_exists(reads, sender):
        raise ApiError(404, f"User {sender} not found", [field_error("userId", "no such user")])
    event_type = NOTIFICATION_SENDER_BLOCKED if blocked else NOTIFICATION_SENDER_UNBLOCKED
    event = NotificationSenderBlocked(user_id=user.subject, sender_id=sender)
    # Keyed by the user who blocks: their blocks and preferences change in order on one partition.
    position = await commands.publish(producer, event_type, user.subject, event, user, ctx)
    return ok(
        {"userId": user.subject, "senderId": sender, "blocked": blocked},
        "Blocked" if blocked else "Unblocked",
        {CONSISTENCY_HEADER: consistency_token([position])},
    )


@router.put(
    "/{notification_id}/read",
    summary="Mark a notification read (its recipient only); idempotent",
    response_model=Success[MarkedReadOut],
    responses={200: {"headers": CONSISTENCY_TOKEN}, **errors(403, 404)},
)
async def mark_read(
    notification_id: NotificationId,
    user: CurrentUser,
    ctx: Context,
    reads: QueryReads,
    settings: AppSettings,
    producer: Producer,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    entry = await _own_entry(reads, settings, user, notification_id, consistency)
    if entry["read_at"] is not None:
        return ok({"id": notification_id, "read": True, "readAt": format_time(entry["read_at"])}, "Already read")
    event = NotificationRead(notification_id=notification_id, user_id=user.subject)
    position = await commands.publish(producer, NOTIFICATION_READ, notification_id, event, user, ctx)
    return ok(
        {"id": notification_id, "read": True, "readAt": None},
        "Marked read",
        {CONSISTENCY_HEADER: consistency_token([position])},
    )


@router.delete(
    "/{notification_id}",
    summary="Remove a notification from the inbox (its recipient only)",
    response_model=Success[NotificationDeletedOut],
    responses={200: {"headers": CONSISTENCY_TOKEN}, **errors(403, 404)},
)
async def delete_notification(
    notification_id: NotificationId,
    user: CurrentUser,
    ctx: Context,
    reads: QueryReads,
    settings: AppSettings,
    producer: Producer,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    await _own_entry(reads, settings, user, notification_id, consistency)
    event = NotificationDeleted(notification_id=notification_id, user_id=user.subject)
    position = await commands.publish(producer, NOTIFICATION_DELETED, notification_id, event, user, ctx)
    return ok(
        {"id": notification_id, "deleted": True},
        "Notification deleted",
        {CONSISTENCY_HEADER: consistency_token([position])},
    )


async def _own_entry(
    reads: Reader, settings: Settings, user: AccessClaims, notification_id: str, token: str | None
) -> dict:
    await queries.caught_up(reads, settings, token)
    entry = await queries.inbox_entry(reads, notification_id)
    if entry is None:
        raise ApiError(404, f"Notification {notification_id} not found")
    if entry["user_id"] != user.subject:
        raise ApiError(403, "Only its recipient may change a notification")
    return entry


# ---- queries (literal paths before `/{user_id}`) ----


@router.get(
    "/preferences/{user_id}",
    summary="A user's channels per kind, quiet hours and time zone (self/admin)",
    response_model=Success[PreferencesOut],
    responses={200: {"headers": STALE}, **errors(403, 404)},
)
async def get_preferences(
    user_id: UserId, user: CurrentUser, reads: QueryReads, settings: AppSettings, consistency: ConsistencyToken = None
) -> JSONResponse:
    _self_or_admin(user, user_id)
    await _require_user(reads, user, user_id)
    fresh = await queries.caught_up(reads, settings, consistency)
    prefs, updated_at = await queries.preferences(reads, user_id)
    return ok(queries.preferences_document(user_id, prefs, updated_at), "Preferences", queries.freshness_headers(fresh))


@router.get(
    "/{notification_id}/state",
    summary="What became of a notification, channel by channel",
    response_model=Success[NotificationStateOut],
    responses={200: {"headers": STALE}, **errors(403, 404)},
)
async def notification_state(
    notification_id: NotificationId,
    user: CurrentUser,
    reads: QueryReads,
    settings: AppSettings,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """Visible to its recipient, its sender and admins. Channels appear as the reactor reports them:
    `deferred` (quiet hours, with `until`), `suppressed` (turned off, with why), `sent` or `failed`."""
    fresh = await queries.caught_up(reads, settings, consistency)
    state = await queries.delivery_state(reads, notification_id)
    if state is None:
        raise ApiError(404, f"Notification {notification_id} not found")
    if user.subject not in (state["userId"], state["requestedBy"]) and not commands.is_admin(user):
        raise ApiError(403, "Only its recipient, its sender or an admin may see this notification")
    return ok(state, "Notification state", queries.freshness_headers(fresh))


@router.get(
    "/{user_id}",
    summary="A user's in-app inbox, newest first, with the unread count (self/admin)",
    response_model=Success[InboxOut],
    responses={200: {"headers": STALE}, **errors(403, 404)},
)
async def inbox(
    user_id: UserId,
    query: SignedInQueryCall,
    paging: PageQuery,
    unread: Annotated[bool, Query(description="Only unread notifications")] = False,
) -> JSONResponse:
    _self_or_admin(query.user, user_id)
    await _require_user(query.reads, query.user, user_id)
    fresh = await queries.caught_up(query.reads, query.settings, query.consistency, redis=True)
    found = await queries.inbox(query.reads, query.redis, user_id, unread, paging)
    return ok(found, "Notifications", queries.freshness_headers(fresh))
