"""The user service's command side: build a command, send it to its decider, turn the decision into
the HTTP answer.

Registration -> `user-registrations` (keyed by the email key) -> `user-registry` -> `user-commands`
-> `user-account` -> `users`. Every other account command goes to `user-commands` (keyed by user id).
A deletion names the account's listings; the account decider sends their delistings on to
`property-commands`, and the route waits for those outcomes too (`close_account`).
"""

from collections.abc import Sequence

from api.common.auth import AccessClaims
from api.common.commands import CommandBus
from api.common.deps import RequestContext
from api.common.errors import ApiError, field_error
from api.common.kafka import CONSISTENCY_HEADER
from schemas.envelope import Envelope, new_event
from schemas.ids import new_id
from schemas.outcomes import CommandOutcome, Verdict
from schemas.personal import EMAIL, NAME, PASSWORD_HASH, PHONE, seal
from schemas.registry import EventData
from schemas.topics import USER_COMMANDS, USER_REGISTRATIONS
from schemas.users import REGISTER_USER, RegisterUser, Role, delisting_command_id, email_key


def registration(
    *,
    user_id: str,
    personal_key: bytes,
    email_secret: bytes,
    email: str,
    name: str,
    phone: str,
    password_hash: str,
    role: Role = Role.USER,
    session_id: str | None = None,
    correlation_id: str | None = None,
) -> Envelope:
    """The registration command, keyed by the email key, its personal fields sealed with the new user's
    key (created beforehand in `user_keys`); also what `ops.create_admin` sends."""
    key = email_key(email, email_secret)
    data = RegisterUser(
        user_id=user_id,
        email=seal(personal_key, user_id, EMAIL, email),
        email_key=key,
        name=seal(personal_key, user_id, NAME, name),
        phone=seal(personal_key, user_id, PHONE, phone),
        password_hash=seal(personal_key, user_id, PASSWORD_HASH, password_hash),
        role=role,
    )
    return new_event(
        type=REGISTER_USER,
        subject=key,
        data=data.to_wire(),
        service="user",
        userid=user_id,
        sessionid=session_id,
        correlationid=correlation_id,
        event_id=new_id("cmd"),
    )


def sealed_profile_changes(personal_key: bytes, user_id: str, changes: dict[str, str]) -> dict[str, str]:
    fields = {"name": NAME, "phone": PHONE}
    return {name: seal(personal_key, user_id, fields[name], value) for name, value in changes.items()}


def account_command(kind: str, user_id: str, data: EventData, actor: AccessClaims, ctx: RequestContext) -> Envelope:
    return new_event(
        type=kind,
        subject=user_id,
        data=data.to_wire(),
        service="user",
        userid=actor.subject,
        sessionid=ctx.session_id,
        correlationid=ctx.correlation_id,
        event_id=new_id("cmd"),
    )


def raise_rejection(outcome: CommandOutcome) -> CommandOutcome:
    if outcome.verdict == Verdict.REJECTED:
        raise ApiError(
            outcome.status or 422,
            outcome.message,
            [field_error(problem.field, problem.message) for problem in outcome.errors],
        )
    return outcome


async def register(bus: CommandBus, envelope: Envelope) -> CommandOutcome:
    return raise_rejection(await bus.send(USER_REGISTRATIONS.name, envelope))


async def decide(bus: CommandBus, envelope: Envelope) -> CommandOutcome:
    return raise_rejection(await bus.send(USER_COMMANDS.name, envelope))


async def close_account(
    bus: CommandBus, envelope: Envelope, listings: Sequence[str]
) -> tuple[CommandOutcome, dict[str, CommandOutcome]]:
    """The deletion's outcome, and those of the listings' delistings the account decider sends with it
    that were decided within the wait (keyed by their command ids)."""
    follow_ups = [delisting_command_id(envelope.id, property_id) for property_id in listings]
    outcome, delistings = await bus.send_with_follow_ups(USER_COMMANDS.name, envelope, follow_ups)
    return raise_rejection(outcome), delistings


def require_self_or_admin(user: AccessClaims, user_id: str) -> None:
    if user.subject != user_id and user.role != Role.ADMIN:
        raise ApiError(403, "Only the user or an admin may do this")


def decision_headers(outcome: CommandOutcome, extra_positions: tuple[str, ...] = ()) -> dict[str, str]:
    headers = {"ETag": f'"{outcome.version or 0}"'}
    positions = (*outcome.positions, *extra_positions)
    if positions:
        headers[CONSISTENCY_HEADER] = ",".join(positions)
    return headers
