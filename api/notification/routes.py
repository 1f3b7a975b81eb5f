"""Notification endpoints (8085). Commands produce to `notifications` (the delivery reactor sends, the
projection records); queries read the notification projection's stores."""

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from api.common.auth import AccessClaims
from api.common.deps import ConsistencyToken, Context, CurrentUser
from api.common.errors import ApiError, field_error
from api.common.idempotency import IDEMPOTENCY_HEADER, fingerprint, idempotent
from api.common.kafka import CONSISTENCY_HEADER, consistency_token
from api.common.pagination import PageQuery
from api.common.responses import OrjsonResponse, ok
from api.notification import commands, queries
from api.notification.models import NOTIFICATION_ID_PATTERN, USER_ID_PATTERN, EmailIn, PreferencesIn, SmsIn
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

UserId = Annotated[str, Path(pattern=USER_ID_PATTERN, description="A user id, `user-…`")]
NotificationId = Annotated[str, Path(pattern=NOTIFICATION_ID_PATTERN, description="A notification id, `notif-…`")]
IdempotencyKey = Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER, max_length=200)]


def _self_or_admin(user: AccessClaims, user_id: str) -> None:
    if user.subject != user_id and not commands.is_admin(user):
        raise ApiError(403, "Only that user or an admin may see this", [field_error("userId", "not yours")])


async def _require_user(request: Request, user: AccessClaims, user_id: str) -> None:
    """Self always exists to themselves (perhaps with an empty inbox); an admin asking about an unknown
    user learns it is unknown."""
    if user.subject != user_id and not await queries.user_exists(request, user_id):
        raise ApiError(404, f"User {user_id} not found")


async def _queue(
    request: Request, body: EmailIn | SmsIn, user: AccessClaims, ctx: Context, key: str | None, *, email: bool
) -> JSONResponse:
    scope = "notification.email" if email else "notification.sms"
    notification = commands.notification_id(scope, user, key)

    async def answer() -> JSONResponse:
        event = await commands.requested(request, body, user, notification, email=email)
        position = await commands.publish(request, NOTIFICATION_REQUESTED, notification, event, user, ctx)
        state_url = f"/api/notifications/{notification}/state"
        data = {"id": notification, "state": "queued", "stateUrl": state_url}
        return OrjsonResponse(
            {"success": True, "message": "Notification queued", "data": data},
            status_code=202,
            headers={"Location": state_url, CONSISTENCY_HEADER: consistency_token([position])},
        )

    return await idempotent(
        request.app.state.redis,
        scope=scope,
        user_id=user.subject,
        key=key,
        request_fingerprint=fingerprint(request.method, request.url.path, body.model_dump(mode="json")),
        answer=answer,
    )


# ---- commands ----


@router.post("/email", status_code=202, summary="Queue an email to a user (or, admins, to an address)")
async def send_email(
    body: EmailIn, user: CurrentUser, ctx: Context, request: Request, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """202 with the notification's id and its state URL. The delivery reactor sends it over SMTP,
    honouring the recipient's quiet hours (and, for system kinds, their channel preferences)."""
    return await _queue(request, body, user, ctx, idempotency_key, email=True)


@router.post("/sms", status_code=202, summary="Queue an SMS (≤ 480 characters) to a user (or, admins, a number)")
async def send_sms(
    body: SmsIn, user: CurrentUser, ctx: Context, request: Request, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return await _queue(request, body, user, ctx, idempotency_key, email=False)


@router.put("/preferences", summary="Update one's own preferences (only the fields sent change)")
async def update_preferences(
    body: PreferencesIn, user: CurrentUser, ctx: Context, request: Request, consistency: ConsistencyToken = None
) -> JSONResponse:
    """Changing preferences twice in a row, the second change builds on the first (the caller's own
    writes are waited for; from another session, send the previous answer's `X-Consistency-Token`)."""
    problems = commands.preference_problems(body)
    if problems:
        raise ApiError(422, "Invalid preferences", problems)
    await queries.caught_up(request, consistency)
    current, _ = await queries.preferences(request, user.subject)
    updated = commands.merged_preferences(current, body)
    event = NotificationPreferencesUpdated(
        user_id=user.subject,
        channels=updated.channels,
        quiet_hours=updated.quiet_hours,
        time_zone=updated.time_zone,
    )
    position = await commands.publish(request, NOTIFICATION_PREFERENCES_UPDATED, user.subject, event, user, ctx)
    return ok(
        queries.preferences_document(user.subject, updated, utc_now()),
        "Preferences updated",
        {CONSISTENCY_HEADER: consistency_token([position])},
    )


@router.put("/blocks/{user_id}", summary="Take no more messages from a user (idempotent)")
async def block_sender(user_id: UserId, user: CurrentUser, ctx: Context, request: Request) -> JSONResponse:
    """From then on that user's messages are refused with 403 ("does not take messages from you"): they
    learn it when they try, rather than writing into the void; a message of theirs still queued is not
    delivered. Only messages are blocked: the platform's own notifications still arrive."""
    return await _set_block(request, user, ctx, user_id, blocked=True)


@router.delete("/blocks/{user_id}", summary="Take messages from a user again (idempotent)")
async def unblock_sender(user_id: UserId, user: CurrentUser, ctx: Context, request: Request) -> JSONResponse:
    return await _set_block(request, user, ctx, user_id, blocked=False)


@router.get("/blocks", summary="The users one has blocked")
async def blocked_senders(user: CurrentUser, request: Request, consistency: ConsistencyToken = None) -> JSONResponse:
    fresh = await queries.caught_up(request, consistency)
    senders = await queries.blocked_senders(request, user.subject)
    return ok({"userId": user.subject, "blocked": senders}, "Blocked users", queries.freshness_headers(fresh))


async def _set_block(request: Request, user: AccessClaims, ctx: Context, sender: str, *, blocked: bool) -> JSONResponse:
    if sender == user.subject:
        raise ApiError(422, "One cannot block oneself", [field_error("userId", "not yourself")])
    if blocked and not await queries.user_exists(request, sender):
        raise ApiError(404, f"User {sender} not found", [field_error("userId", "no such user")])
    event_type = NOTIFICATION_SENDER_BLOCKED if blocked else NOTIFICATION_SENDER_UNBLOCKED
    event = NotificationSenderBlocked(user_id=user.subject, sender_id=sender)
    # Keyed by the user who blocks: their blocks and preferences change in order on one partition.
    position = await commands.publish(request, event_type, user.subject, event, user, ctx)
    return ok(
        {"userId": user.subject, "senderId": sender, "blocked": blocked},
        "Blocked" if blocked else "Unblocked",
        {CONSISTENCY_HEADER: consistency_token([position])},
    )


@router.put("/{notification_id}/read", summary="Mark a notification read (its recipient only); idempotent")
async def mark_read(
    notification_id: NotificationId,
    user: CurrentUser,
    ctx: Context,
    request: Request,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    entry = await _own_entry(request, user, notification_id, consistency)
    if entry["read_at"] is not None:
        return ok({"id": notification_id, "read": True, "readAt": format_time(entry["read_at"])}, "Already read")
    event = NotificationRead(notification_id=notification_id, user_id=user.subject)
    position = await commands.publish(request, NOTIFICATION_READ, notification_id, event, user, ctx)
    return ok(
        {"id": notification_id, "read": True, "readAt": None},
        "Marked read",
        {CONSISTENCY_HEADER: consistency_token([position])},
    )


@router.delete("/{notification_id}", summary="Remove a notification from the inbox (its recipient only)")
async def delete_notification(
    notification_id: NotificationId,
    user: CurrentUser,
    ctx: Context,
    request: Request,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    await _own_entry(request, user, notification_id, consistency)
    event = NotificationDeleted(notification_id=notification_id, user_id=user.subject)
    position = await commands.publish(request, NOTIFICATION_DELETED, notification_id, event, user, ctx)
    return ok(
        {"id": notification_id, "deleted": True},
        "Notification deleted",
        {CONSISTENCY_HEADER: consistency_token([position])},
    )


async def _own_entry(request: Request, user: AccessClaims, notification_id: str, token: str | None) -> dict:
    await queries.caught_up(request, token)
    entry = await queries.inbox_entry(request, notification_id)
    if entry is None:
        raise ApiError(404, f"Notification {notification_id} not found")
    if entry["user_id"] != user.subject:
        raise ApiError(403, "Only its recipient may change a notification")
    return entry


# ---- queries (literal paths before `/{user_id}`) ----


@router.get("/preferences/{user_id}", summary="A user's channels per kind, quiet hours and time zone (self/admin)")
async def get_preferences(
    user_id: UserId, user: CurrentUser, request: Request, consistency: ConsistencyToken = None
) -> JSONResponse:
    _self_or_admin(user, user_id)
    await _require_user(request, user, user_id)
    fresh = await queries.caught_up(request, consistency)
    prefs, updated_at = await queries.preferences(request, user_id)
    return ok(queries.preferences_document(user_id, prefs, updated_at), "Preferences", queries.freshness_headers(fresh))


@router.get("/{notification_id}/state", summary="What became of a notification, channel by channel")
async def notification_state(
    notification_id: NotificationId, user: CurrentUser, request: Request, consistency: ConsistencyToken = None
) -> JSONResponse:
    """Visible to its recipient, its sender and admins. Channels appear as the reactor reports them:
    `deferred` (quiet hours, with `until`), `suppressed` (turned off, with why), `sent` or `failed`."""
    fresh = await queries.caught_up(request, consistency)
    state = await queries.delivery_state(request, notification_id)
    if state is None:
        raise ApiError(404, f"Notification {notification_id} not found")
    if user.subject not in (state["userId"], state["requestedBy"]) and not commands.is_admin(user):
        raise ApiError(403, "Only its recipient, its sender or an admin may see this notification")
    return ok(state, "Notification state", queries.freshness_headers(fresh))


@router.get("/{user_id}", summary="A user's in-app inbox, newest first, with the unread count (self/admin)")
async def inbox(
    user_id: UserId,
    user: CurrentUser,
    request: Request,
    paging: PageQuery,
    unread: Annotated[bool, Query(description="Only unread notifications")] = False,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    _self_or_admin(user, user_id)
    await _require_user(request, user, user_id)
    fresh = await queries.caught_up(request, consistency, redis=True)
    return ok(await queries.inbox(request, user_id, unread, paging), "Notifications", queries.freshness_headers(fresh))
