"""The user aggregate's language: registration, account commands and the events on `users`.

Two deciders own user state (see topology.md):
- `user-registry` decides `user.register.v1` commands on `user-registrations`, keyed by the email key
  (a SHA-256 of the normalised email), so every attempt at one address meets one single writer: the
  first wins, the others are refused with 409. The winner is forwarded as `user.open_account.v1` to
  `user-commands` under the same command id.
- `user-account` decides `user-commands` (keyed by user id): opening the account, profile updates,
  deletion and recorded property counts. It is the only writer of sequenced events on `users`. A
  deletion also sends `property.delete.v1` for each listing the account had (to `property-commands`).
Logins are facts (`user.logged_in.v1`), produced to `users` directly by the user service, unsequenced.

Email is immutable after registration: changing it would need the registry to move a reservation
between two keys (two partitions) atomically, which is a saga of its own.
"""

import hashlib
import hmac
import re
from typing import Annotated

from pydantic import Field, StringConstraints

from schemas.properties import Role
from schemas.registry import EVENTS, EventData

__all__ = ["Role"]

# Commands
REGISTER_USER = "user.register.v1"
RELEASE_EMAIL = "user.release_email.v1"
OPEN_ACCOUNT = "user.open_account.v1"
UPDATE_PROFILE = "user.update_profile.v1"
DELETE_ACCOUNT = "user.delete_account.v1"
RECORD_PROPERTY_COUNT = "user.record_property_count.v1"

# Events
USER_REGISTERED = "user.registered.v1"
USER_PROFILE_UPDATED = "user.profile_updated.v1"
USER_DELETED = "user.deleted.v1"
USER_PROPERTY_COUNT_UPDATED = "user.property_count_updated.v1"
USER_LOGGED_IN = "user.logged_in.v1"

NAME_MAX = 100
EMAIL_MAX = 254
E164 = r"^\+[1-9][0-9]{7,14}$"
_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def normalise_email(email: str) -> str:
    """Trimmed and lower-cased as a whole: `Priya@Example.COM ` and `priya@example.com` are one account.
    (Local parts are case-sensitive by RFC 5321, but no mail provider a user meets treats them so.)"""
    return email.strip().lower()


def is_valid_email(email: str) -> bool:
    return len(email) <= EMAIL_MAX and _EMAIL.match(email) is not None


def email_key(normalised_email: str, secret: bytes) -> str:
    """The key of `user-registrations` and of the registry's table: the same address always lands on the
    same partition and the same table entry, and no Kafka key or changelog carries the address itself.
    An HMAC with a server secret (`HI_EMAIL_KEY_SECRET`), not a bare hash: a bare SHA-256 of an email
    is reversed by hashing a list of known addresses."""
    return "email-" + hmac.new(secret, normalised_email.encode(), hashlib.sha256).hexdigest()


# ---- commands ----


# Personal fields (email, name, phone, password hash) of every command and event below are sealed with
# the user's own key (`schemas/personal.py`): `pii:v1:…` strings, never the clear value.


class RegisterUser(EventData):
    """On `user-registrations`, keyed by `email_key`; `user_id` is the id the new account will get."""

    user_id: str
    email: str
    email_key: str
    name: str
    phone: str
    password_hash: str
    role: Role = Role.USER


class OpenAccount(EventData):
    """The registry's forward of an accepted registration, on `user-commands` keyed by the new user id."""

    email: str
    email_key: str
    name: str
    phone: str
    password_hash: str
    role: Role = Role.USER


class ReleaseEmail(EventData):
    """On `user-registrations`, keyed by `email_key`: the account holding the address was closed, so the
    address may be registered again. Sent by the account decider with the deletion it decided."""

    user_id: str
    email_key: str


class UpdateProfile(EventData):
    """`changes`: the sealed new values of the fields sent (validated in the clear by the user service)."""

    changes: dict[str, str]
    expected_version: int | None = None
    actor_role: Role = Role.USER


class DeleteAccount(EventData):
    expected_version: int | None = None
    actor_role: Role = Role.USER
    # The account's live listings as the user service read them: the account decider delists each with
    # the closing (`delisting_command_id`), so a crash between the two cannot leave one listed.
    listings: tuple[Annotated[str, StringConstraints(pattern=r"^prop-[A-Za-z0-9]{1,64}$")], ...] = ()


def delisting_command_id(deletion_command_id: str, property_id: str) -> str:
    """The id of the command that delists `property_id` because of the account deletion: derived, so a
    deletion decided again sends the very same command, which the property decider answers once."""
    return "cmd-" + hashlib.sha256(f"{deletion_command_id}|delist|{property_id}".encode()).hexdigest()[:32]


class RecordPropertyCount(EventData):
    """A recount of the user's live listings from the property read model."""

    property_count: int = Field(ge=0)
    actor_role: Role = Role.USER


# ---- events (on `users`, keyed by user id) ----


class UserRegistered(EventData):
    email: str
    name: str
    phone: str
    password_hash: str  # argon2id, computed by the user service; the password itself never travels
    role: Role = Role.USER
    email_key: str | None = None  # to release the address when the account closes (absent before that)


class UserProfileUpdated(EventData):
    """The whole profile after the change, so projections write absolute rows."""

    name: str
    phone: str
    changed_fields: tuple[str, ...]


class UserDeleted(EventData):
    """Closes the account; projections erase its personal data. Carries none itself."""


class UserPropertyCountUpdated(EventData):
    property_count: int


class UserLoggedIn(EventData):
    """A fact (no sequence), produced by the user service on each successful login."""

    method: str = "password"


for _type, _model in (
    (USER_REGISTERED, UserRegistered),
    (USER_PROFILE_UPDATED, UserProfileUpdated),
    (USER_DELETED, UserDeleted),
    (USER_PROPERTY_COUNT_UPDATED, UserPropertyCountUpdated),
    (USER_LOGGED_IN, UserLoggedIn),
):
    EVENTS.register(_type, _model)

ACCOUNT_COMMANDS: dict[str, type[EventData]] = {
    OPEN_ACCOUNT: OpenAccount,
    UPDATE_PROFILE: UpdateProfile,
    DELETE_ACCOUNT: DeleteAccount,
    RECORD_PROPERTY_COUNT: RecordPropertyCount,
}
