"""Pure part of the users read-model projection: records of `users` -> changes for Postgres, and a
user's current row -> the Redis profile document.

Logins (`user.logged_in.v1`) are unsequenced facts for the history projections: nothing here.
Property counts live in `user_property_counts` (the property projection's): their event only moves
the version on. A deletion erases: the row keeps its id, role and version, and nothing personal.
Personal fields arrive sealed (`schemas/personal.py`); the Postgres sink opens them with the user's key
from `user_keys`, and deletes that key in the transaction that erases the account.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import orjson

from schemas.codec import EventDecodeError, decode
from schemas.envelope import format_time
from schemas.personal import EMAIL, NAME, PASSWORD_HASH, PHONE, is_sealed, unseal
from schemas.registry import EVENTS
from schemas.users import (
    USER_DELETED,
    USER_LOGGED_IN,
    USER_PROFILE_UPDATED,
    USER_PROPERTY_COUNT_UPDATED,
    USER_REGISTERED,
    UserProfileUpdated,
    UserRegistered,
)
from streams.dead_letters import DeadLetter
from streams.positions import RawRecord, SourcePosition

PROJECTION_CONSUMER = "user-projection"


@dataclass(frozen=True)
class UserChange:
    user_id: str
    version: int
    event_id: str
    at: datetime
    kind: str  # "registered" | "profile" | "erased" | "touched"
    email: str | None = None
    password_hash: str | None = None
    name: str | None = None
    phone: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class UserPlan:
    changes: list[UserChange]
    dead_letters: list[DeadLetter]
    positions: list[SourcePosition] = field(default_factory=list)


def _require_sealed(event_type: str, **fields: str) -> None:
    clear = sorted(name for name, value in fields.items() if not is_sealed(value))
    if clear:
        raise EventDecodeError(f"{event_type} carries personal data in the clear: {', '.join(clear)}")


def user_change(raw: bytes | None) -> UserChange | None:
    """None for facts this projection has nothing to do with; raises `EventDecodeError` for poison."""
    event = EVENTS.read(decode(raw))
    envelope, data = event.envelope, event.data
    if envelope.type == USER_LOGGED_IN:
        return None
    if envelope.sequence is None or envelope.sequence < 1:
        raise EventDecodeError(f"{envelope.type} needs a sequence (the user's version), got {envelope.sequence}")
    common = {"user_id": envelope.subject, "version": envelope.sequence, "event_id": envelope.id, "at": envelope.time}
    if envelope.type == USER_REGISTERED:
        assert isinstance(data, UserRegistered)
        _require_sealed(envelope.type, email=data.email, name=data.name, phone=data.phone, hash=data.password_hash)
        return UserChange(
            **common,
            kind="registered",
            email=data.email,
            password_hash=data.password_hash,
            name=data.name,
            phone=data.phone,
            role=data.role.value,
        )
    if envelope.type == USER_PROFILE_UPDATED:
        assert isinstance(data, UserProfileUpdated)
        _require_sealed(envelope.type, name=data.name, phone=data.phone)
        return UserChange(**common, kind="profile", name=data.name, phone=data.phone)
    if envelope.type == USER_DELETED:
        return UserChange(**common, kind="erased")
    if envelope.type == USER_PROPERTY_COUNT_UPDATED:
        return UserChange(**common, kind="touched")
    raise EventDecodeError(f"{envelope.type} does not belong on the users topic")


def opened(change: UserChange, key: bytes | None) -> UserChange:
    """The change with its personal fields opened with the user's key. Without the key (the account was
    closed, and this is a redelivery or a rebuild) they stay unknown: the row keeps only what is not
    personal, exactly as an erased row does."""

    def clear(field: str, value: str | None) -> str | None:
        if value is None or key is None:
            return None
        return unseal(key, change.user_id, field, value)

    return replace(
        change,
        email=clear(EMAIL, change.email),
        password_hash=clear(PASSWORD_HASH, change.password_hash),
        name=clear(NAME, change.name),
        phone=clear(PHONE, change.phone),
    )


def plan_users(records: Sequence[RawRecord]) -> UserPlan:
    changes: list[UserChange] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            change = user_change(record.value)
        except EventDecodeError as exc:
            dead.append(DeadLetter(record.key, record.value, str(exc), record.position, PROJECTION_CONSUMER))
            continue
        if change is not None:
            changes.append(change)
    return UserPlan(changes, dead, [r.position for r in records])


@dataclass(frozen=True)
class UserRow:
    id: str
    email_normalised: str | None
    name: str | None
    phone: str | None
    role: str | None
    deleted: bool
    deleted_at: datetime | None
    version: int
    created_at: datetime | None
    updated_at: datetime

    @property
    def complete(self) -> bool:
        return self.deleted or (self.name is not None and self.created_at is not None)


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def redis_document(row: UserRow) -> bytes:
    """`user:{id}`: the full profile (the service hides email and phone from others), or a tombstone
    holding only the version once erased."""
    if row.deleted:
        return orjson.dumps({"id": row.id, "deleted": True, "version": row.version})
    return orjson.dumps(
        {
            "id": row.id,
            "email": row.email_normalised,
            "name": row.name,
            "phone": row.phone,
            "role": row.role,
            "version": row.version,
            "createdAt": _time(row.created_at),
            "updatedAt": _time(row.updated_at),
            "deleted": False,
        }
    )
