"""The notification service's command side: check a request, name its recipient by user id, and
produce the event to `notifications`. Nothing here needs a decider: a new notification has no state
to decide against (its id is fresh, or derived from the Idempotency-Key), reads and deletions are
checked against the read model, and one user's preferences change in order on one partition.
"""

import re

from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from api.common.auth import AccessClaims
from api.common.consistency import Reader
from api.common.deps import RequestContext
from api.common.errors import ApiError, FieldError, field_error
from api.common.idempotency import derived_id
from api.common.kafka import EventProducer, Position
from api.common.personal_keys import personal_key
from api.common.rate_limits import count_in_window
from api.notification import queries
from api.notification.models import ChannelsIn, EmailIn, PreferencesIn, SmsIn
from config.settings import Settings
from schemas.envelope import new_event
from schemas.ids import new_id
from schemas.notifications import (
    TEMPLATES,
    ChannelChoice,
    Content,
    Kind,
    KindChannels,
    NotificationRequested,
    Preferences,
    QuietHours,
    RequestedChannel,
    seal_message,
)
from schemas.properties import Role
from schemas.registry import EventData
from schemas.topics import NOTIFICATIONS
from schemas.users import E164, is_valid_email, normalise_email

_E164 = re.compile(E164)


def is_admin(user: AccessClaims) -> bool:
    return user.role == Role.ADMIN


def notification_id(scope: str, user: AccessClaims, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return new_id("notif")
    return derived_id("notif", scope, user.subject, idempotency_key)


def _invalid(errors: list[FieldError]) -> ApiError:
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return ApiError(422, f"Invalid request: check {fields}", errors)


def _content(body: EmailIn | SmsIn, *, email: bool, default_kind: Kind) -> tuple[Content, Kind, list[FieldError]]:
    errors: list[FieldError] = []
    if body.template is not None:
        template = TEMPLATES.get(body.template)
        if template is None:
            errors.append(field_error("template", f"unknown template; known: {', '.join(sorted(TEMPLATES))}"))
            return Content(), body.kind or default_kind, errors
        given = [name for name in ("subject", "text", "html") if getattr(body, name, None) is not None]
        errors.extend(field_error(name, "not allowed with a template") for name in given)
        errors.extend(
            field_error(f"variables.{name}", "required by the template")
            for name in template.required
            if body.variables.get(name) in (None, "")
        )
        if body.kind is not None and body.kind != template.kind:
            errors.append(field_error("kind", f"the {template.name} template is a {template.kind.value} notification"))
        content = Content(template=template.name, variables=body.variables)
        return content, template.kind, errors
    if body.variables:
        errors.append(field_error("variables", "only with a template"))
    if email:
        assert isinstance(body, EmailIn)
        if body.subject is None:
            errors.append(field_error("subject", "required (or use a template)"))
        if body.text is None:
            errors.append(field_error("text", "required (or use a template)"))
        content = Content(subject=body.subject, text=body.text, html=body.html)
    else:
        if body.text is None:
            errors.append(field_error("text", "required (or use a template)"))
        content = Content(text=body.text)
    return content, body.kind or default_kind, errors


async def requested(
    reads: Reader,
    pool: AsyncConnectionPool,
    redis: Redis,
    settings: Settings,
    body: EmailIn | SmsIn,
    user: AccessClaims,
    notification: str,
    *,
    email: bool,
) -> NotificationRequested:
    """Checks the body and who may send it; the recipient is named by user id whenever they have an
    account, so no registered person's address ever enters an event."""
    errors: list[FieldError] = []
    if (body.user_id is None) == (body.to is None):
        errors.append(field_error("userId", "send exactly one of userId (a user) and to (an address)"))
    address = None
    if body.to is not None:
        if email:
            address = normalise_email(body.to)
            if not is_valid_email(address):
                errors.append(field_error("to", "not a valid email address"))
        else:
            address = body.to.strip()
            if not _E164.match(address):
                errors.append(field_error("to", "an E.164 phone number, e.g. +919876543210"))
    admin = is_admin(user)
    content, kind, content_errors = _content(body, email=email, default_kind=Kind.DIRECT if admin else Kind.MESSAGE)
    errors.extend(content_errors)
    if errors:
        raise _invalid(errors)
    if not admin:
        if body.to is not None:
            raise ApiError(403, "Only admins may send to an address", [field_error("to", "admins only")])
        if kind != Kind.MESSAGE or body.template is not None:
            raise ApiError(
                403, "Only admins may send system notifications", [field_error("kind", "users send messages")]
            )
    if kind == Kind.MESSAGE:
        _a_message(body, content)
    user_id = body.user_id
    if user_id is not None:
        if not await queries.user_exists(reads, user_id):
            raise ApiError(404, f"User {user_id} not found", [field_error("userId", "no such user")])
    elif address is not None:
        # An address that belongs to an account goes to the account: the event then names a user id.
        user_id = await queries.user_by_address(reads, address, email=email)
        if user_id is not None:
            address = None
    if kind == Kind.MESSAGE:
        assert user_id is not None
        await _may_write(reads, redis, settings, user, user_id)
        content = seal_message(content, *await _keys(pool, user.subject, user_id))
    return NotificationRequested(
        notification_id=notification,
        user_id=user_id,
        address=address,
        channel=RequestedChannel.EMAIL if email else RequestedChannel.SMS,
        kind=kind,
        content=content,
        requested_by=user.subject,
    )


def _a_message(body: EmailIn | SmsIn, content: Content) -> None:
    """A message is from one user to another, in plain text: HTML and templates are the platform's."""
    if body.to is not None:
        raise ApiError(422, "A message goes to a user", [field_error("to", "send messages to a userId")])
    if content.html is not None:
        raise ApiError(
            403,
            "Messages are plain text; HTML is for the platform's own messages",
            [field_error("html", "admins only")],
        )


async def _may_write(reads: Reader, redis: Redis, s: Settings, user: AccessClaims, recipient: str) -> None:
    """Refused when the recipient blocked the sender (they would rather know than write into the void),
    or when the sender wrote too many messages lately."""
    if recipient == user.subject:
        raise ApiError(422, "A message goes to someone else", [field_error("userId", "not yourself")])
    if await queries.blocks(reads, recipient, user.subject):
        raise ApiError(403, "This user does not take messages from you", [field_error("userId", "blocked you")])
    await count_in_window(
        redis,
        f"notifications:messages:{user.subject}",
        s.notification_message_limit,
        s.notification_message_window_seconds,
        f"At most {s.notification_message_limit} messages per {s.notification_message_window_seconds} s",
    )


async def _keys(pool: AsyncConnectionPool, sender: str, recipient: str) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    sender_key, recipient_key = await personal_key(pool, sender), await personal_key(pool, recipient)
    if sender_key is None:
        raise ApiError(403, "Only people with an account send messages", [field_error("userId", "no account")])
    if recipient_key is None:
        raise ApiError(404, f"User {recipient} not found", [field_error("userId", "no such user")])
    return (sender, sender_key), (recipient, recipient_key)


async def publish(
    producer: EventProducer, event_type: str, subject: str, data: EventData, user: AccessClaims, ctx: RequestContext
) -> Position:
    event = new_event(
        type=event_type,
        subject=subject,
        data=data.to_wire(),
        service="notification",
        userid=user.subject,
        sessionid=ctx.session_id,
        correlationid=ctx.correlation_id,
    )
    position: Position = await producer.publish(NOTIFICATIONS.name, event, key=subject)
    return position


def merged_preferences(current: Preferences, body: PreferencesIn) -> Preferences:
    channels = current.channels
    if body.channels is not None:
        channels = _merged_channels(channels, body.channels)
    quiet = current.quiet_hours
    if "quiet_hours" in body.model_fields_set:
        quiet = QuietHours(start=body.quiet_hours.start, end=body.quiet_hours.end) if body.quiet_hours else None
    return Preferences(channels=channels, quiet_hours=quiet, time_zone=body.time_zone or current.time_zone)


def _merged_channels(current: KindChannels, changes: ChannelsIn) -> KindChannels:
    merged = {}
    for kind in ("listing_alert", "account", "marketing", "message"):
        now: ChannelChoice = getattr(current, kind)
        change = getattr(changes, kind)
        if change is None:
            merged[kind] = now
            continue
        merged[kind] = ChannelChoice(
            email=now.email if change.email is None else change.email,
            sms=now.sms if change.sms is None else change.sms,
            in_app=now.in_app if change.in_app is None else change.in_app,
        )
    return KindChannels(**merged)


def preference_problems(body: PreferencesIn) -> list[FieldError]:
    if not body.model_fields_set:
        return [field_error("body", "send at least one of channels, quietHours, timeZone")]
    errors = []
    if body.quiet_hours is not None and body.quiet_hours.start == body.quiet_hours.end:
        errors.append(field_error("quietHours.end", "must differ from start"))
    return errors
