"""The users projection's pure part: sealed personal fields in, opened (or forgotten) rows out."""

from datetime import UTC, datetime

import pytest

from schemas.codec import EventDecodeError, encode
from schemas.envelope import new_event
from schemas.personal import EMAIL, NAME, PASSWORD_HASH, PHONE, new_personal_key, seal
from schemas.users import USER_REGISTERED, UserRegistered
from streams.users.projection import opened, user_change

USER = "user-priya"


def registered(key: bytes, *, clear_name: bool = False) -> bytes:
    data = UserRegistered(
        email=seal(key, USER, EMAIL, "priya@example.in"),
        name="Priya" if clear_name else seal(key, USER, NAME, "Priya"),
        phone=seal(key, USER, PHONE, "+919876543210"),
        password_hash=seal(key, USER, PASSWORD_HASH, "$argon2id$x"),
    )
    envelope = new_event(
        type=USER_REGISTERED, subject=USER, data=data.to_wire(), service="user", userid=USER, sequence=1
    )
    return encode(envelope)


def test_a_registration_opens_with_the_users_key():
    key = new_personal_key()
    change = user_change(registered(key))
    assert change is not None and change.name != "Priya"  # still sealed until the sink opens it
    clear = opened(change, key)
    assert (clear.email, clear.name, clear.phone, clear.password_hash) == (
        "priya@example.in",
        "Priya",
        "+919876543210",
        "$argon2id$x",
    )
    assert clear.at <= datetime.now(UTC)


def test_without_the_key_a_replayed_registration_keeps_nothing_personal():
    change = user_change(registered(new_personal_key()))
    assert change is not None
    forgotten = opened(change, None)
    assert (forgotten.email, forgotten.name, forgotten.phone, forgotten.password_hash) == (None, None, None, None)
    assert (forgotten.user_id, forgotten.version, forgotten.role) == (USER, 1, "USER")


def test_personal_data_in_the_clear_is_poison():
    with pytest.raises(EventDecodeError, match="in the clear: name"):
        user_change(registered(new_personal_key(), clear_name=True))
