"""The user deciders: pure functions, no I/O.

- The registry: `decide_registration(command, owner)` where `owner` is the user id already holding the
  email key (or None). First one wins; the same command redelivered wins again (it is the owner).
- The account: `decide(command, state)` and `evolve(state, event)` over one account, like the property
  decider. Its state holds no email, and name and phone only sealed (`schemas/personal.py`): its
  changelog is as forgetful as the events once the user's key is gone.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from schemas.outcomes import FieldProblem, NewEvent, Rejection
from schemas.personal import is_sealed
from schemas.registry import EventData
from schemas.users import (
    DELETE_ACCOUNT,
    OPEN_ACCOUNT,
    RECORD_PROPERTY_COUNT,
    UPDATE_PROFILE,
    USER_DELETED,
    USER_PROFILE_UPDATED,
    USER_PROPERTY_COUNT_UPDATED,
    USER_REGISTERED,
    DeleteAccount,
    OpenAccount,
    RecordPropertyCount,
    RegisterUser,
    ReleaseEmail,
    Role,
    UpdateProfile,
    UserDeleted,
    UserProfileUpdated,
    UserPropertyCountUpdated,
    UserRegistered,
)
from streams.remembered_commands import Remembered, decided_before, remembered_from_json


@dataclass(frozen=True)
class Command:
    id: str
    type: str
    user_id: str  # the account the command is about (the message key)
    actor_id: str  # who asked
    time: datetime
    data: EventData


Decision = list[NewEvent] | Rejection

OPENED_AT = 1  # the version an account's opening leaves it at, however often the opening is decided


# ---- the registry ----


def decide_release(release: ReleaseEmail, owner: str | None) -> bool:
    """Free the address only if the closed account still holds it: a redelivered release arriving after
    someone else registered the address must not take it from them."""
    return owner == release.user_id


@dataclass(frozen=True)
class Reserved:
    """The email key now belongs to this user id: forward the registration to the account decider."""

    user_id: str


def decide_registration(command: RegisterUser, owner: str | None) -> Reserved | Rejection:
    if owner is None or owner == command.user_id:
        return Reserved(command.user_id)
    return Rejection(409, "An account with this email already exists", (FieldProblem(field="email", message="taken"),))


# ---- the account ----


@dataclass(frozen=True)
class AccountState:
    id: str
    version: int
    name: str | None
    phone: str | None
    role: Role
    created_at: datetime
    property_count: int = 0
    deleted: bool = False
    # (command id, the version its acceptance left): a redelivered command is answered as the first time.
    recent_commands: Remembered = field(default_factory=tuple)
    email_key: str | None = None
    # The offset, in its partition of user-commands, of the last command decided into this state. A
    # command redelivered after a crash at or below it was decided already, even once it is forgotten.
    decided_through: int | None = None


def decide(command: Command, state: AccountState | None) -> Decision:
    if decided_before(state, command.id):
        return []  # already applied: the caller gets the version it left (`version_after`)
    if command.type == OPEN_ACCOUNT:
        assert isinstance(command.data, OpenAccount)
        opened = command.data
        if state is not None and state.email_key is not None and state.email_key == opened.email_key:
            # User ids are new per registration: this account was opened by this very registration, which
            # the registry forwarded again after a crash, with the account's later commands since pushing
            # it out of memory. Already applied; it left version 1 (`OPENED_AT`).
            return []
        if state is not None:
            return Rejection(409, f"Account {command.user_id} already exists")
        return [
            NewEvent(
                USER_REGISTERED,
                UserRegistered(
                    email=opened.email,
                    name=opened.name,
                    phone=opened.phone,
                    password_hash=opened.password_hash,
                    role=opened.role,
                    email_key=opened.email_key,
                ),
            )
        ]
    if state is None or state.deleted:
        return Rejection(404, f"User {command.user_id} not found")
    is_admin = getattr(command.data, "actor_role", Role.USER) == Role.ADMIN
    if command.actor_id != state.id and not is_admin:
        return Rejection(403, "Only the user or an admin may do this")
    expected = getattr(command.data, "expected_version", None)
    if expected is not None and expected != state.version:
        return Rejection(409, f"User is at version {state.version}, not {expected}; reload and retry")
    if command.type == UPDATE_PROFILE:
        assert isinstance(command.data, UpdateProfile)
        return _update(command.data, state)
    if command.type == DELETE_ACCOUNT:
        assert isinstance(command.data, DeleteAccount)
        return [NewEvent(USER_DELETED, UserDeleted())]
    if command.type == RECORD_PROPERTY_COUNT:
        assert isinstance(command.data, RecordPropertyCount)
        if command.data.property_count == state.property_count:
            return []  # already recorded: a recount changes nothing and emits nothing
        return [
            NewEvent(USER_PROPERTY_COUNT_UPDATED, UserPropertyCountUpdated(property_count=command.data.property_count))
        ]
    return Rejection(422, f"Unknown command {command.type}")


def _update(update: UpdateProfile, state: AccountState) -> Decision:
    """The values arrive sealed with the user's key (validated in the clear by the user service), so
    the decider compares sealed values: sealing is deterministic per user and field."""
    unknown = sorted(set(update.changes) - {"name", "phone"})
    if unknown:
        return Rejection(
            422, "Unknown profile fields", tuple(FieldProblem(field=f, message="unknown") for f in unknown)
        )
    unsealed = sorted(name for name, value in update.changes.items() if not is_sealed(value))
    if unsealed:
        return Rejection(
            422, "Profile fields must be sealed", tuple(FieldProblem(field=f, message="not sealed") for f in unsealed)
        )
    current = {"name": state.name, "phone": state.phone}
    after = {**current, **update.changes}
    changed = tuple(sorted(name for name, value in after.items() if current[name] != value))
    if not changed:
        return []
    name, phone = after["name"], after["phone"]
    assert name is not None and phone is not None  # an open account always has both
    return [NewEvent(USER_PROFILE_UPDATED, UserProfileUpdated(name=name, phone=phone, changed_fields=changed))]


def evolve(state: AccountState | None, event: NewEvent, *, user_id: str, time: datetime) -> AccountState:
    data = event.data
    if isinstance(data, UserRegistered):
        return AccountState(
            id=user_id,
            version=OPENED_AT,
            name=data.name,
            phone=data.phone,
            role=data.role,
            created_at=time,
            email_key=data.email_key,
        )
    assert state is not None, f"{event.type} before user.registered"
    if isinstance(data, UserProfileUpdated):
        return replace(state, version=state.version + 1, name=data.name, phone=data.phone)
    if isinstance(data, UserDeleted):
        # The decider's own state forgets the person too: only the account's skeleton remains.
        return replace(state, version=state.version + 1, name=None, phone=None, deleted=True)
    if isinstance(data, UserPropertyCountUpdated):
        return replace(state, version=state.version + 1, property_count=data.property_count)
    raise ValueError(f"cannot evolve an account with {event.type}")


def email_to_release(before: AccountState | None, after: AccountState | None) -> ReleaseEmail | None:
    """What the registry must be told when a decision closed the account."""
    if before is None or after is None or before.deleted or not after.deleted or before.email_key is None:
        return None
    return ReleaseEmail(user_id=before.id, email_key=before.email_key)


def listings_to_delist(command: Command, before: AccountState | None, after: AccountState | None) -> tuple[str, ...]:
    """The listings a decision that closed the account takes down with it (named by the command)."""
    if not isinstance(command.data, DeleteAccount) or before is None or before.deleted:
        return ()
    if after is None or not after.deleted:
        return ()
    return command.data.listings


def state_to_json(state: AccountState) -> dict[str, Any]:
    return {
        "id": state.id,
        "version": state.version,
        "name": state.name,
        "phone": state.phone,
        "role": state.role.value,
        "createdAt": state.created_at.isoformat(),
        "propertyCount": state.property_count,
        "deleted": state.deleted,
        "recentCommands": [[id_, version] for id_, version in state.recent_commands],
        "emailKey": state.email_key,
        "decidedThrough": state.decided_through,
    }


def state_from_json(document: dict[str, Any]) -> AccountState:
    return AccountState(
        id=document["id"],
        version=document["version"],
        name=document["name"],
        phone=document["phone"],
        role=Role(document["role"]),
        created_at=datetime.fromisoformat(document["createdAt"]),
        property_count=document["propertyCount"],
        deleted=document["deleted"],
        recent_commands=remembered_from_json(document["recentCommands"]),
        email_key=document.get("emailKey"),
        decided_through=document.get("decidedThrough"),  # absent from states written before it was kept
    )
