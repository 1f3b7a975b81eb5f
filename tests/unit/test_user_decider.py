"""The user deciders, events in and events out: no Kafka."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.personal import EMAIL, NAME, PASSWORD_HASH, PHONE, seal, unseal
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
    delisting_command_id,
    email_key,
    normalise_email,
)
from streams.remembered_commands import decided_before, remember, version_after
from streams.users.decider import (
    AccountState,
    Command,
    Rejection,
    Reserved,
    decide,
    decide_registration,
    decide_release,
    email_to_release,
    evolve,
    listings_to_delist,
    state_from_json,
    state_to_json,
)

NOW = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
USER = "user-priya"
KEY = bytes(range(32))
SECRET = b"test-email-secret"


def sealed(field: str, value: str) -> str:
    return seal(KEY, USER, field, value)


def registration(user_id: str = USER) -> RegisterUser:
    email = normalise_email(" Priya@Example.IN ")
    return RegisterUser(
        user_id=user_id,
        email=sealed(EMAIL, email),
        email_key=email_key(email, SECRET),
        name=sealed(NAME, "Priya"),
        phone=sealed(PHONE, "+919876543210"),
        password_hash=sealed(PASSWORD_HASH, "$argon2id$..."),
    )


def command(kind: str, data, actor: str = USER, command_id: str = "cmd-1") -> Command:
    return Command(command_id, kind, USER, actor, NOW, data)


def opened() -> AccountState:
    data = OpenAccount(
        email=sealed(EMAIL, "priya@example.in"),
        email_key="email-x",
        name=sealed(NAME, "Priya"),
        phone=sealed(PHONE, "+919876543210"),
        password_hash=sealed(PASSWORD_HASH, "h"),
    )
    [event] = decide(command(OPEN_ACCOUNT, data, command_id="cmd-open"), None)
    return remember(evolve(None, event, user_id=USER, time=NOW), "cmd-open", 0)


def test_email_keys_ignore_case_and_spaces_and_hide_the_address():
    assert email_key(normalise_email(" Priya@Example.IN "), SECRET) == email_key("priya@example.in", SECRET)
    assert "priya" not in email_key("priya@example.in", SECRET)
    # keyed by the server's secret: a list of known addresses hashed by anyone else does not match
    assert email_key("priya@example.in", SECRET) != email_key("priya@example.in", b"another secret")


def test_the_first_registration_of_an_email_wins_and_the_others_are_409():
    assert decide_registration(registration(), None) == Reserved(USER)
    refused = decide_registration(registration("user-other"), USER)
    assert isinstance(refused, Rejection) and refused.status == 409 and refused.errors[0].field == "email"


def test_a_redelivered_registration_wins_again():
    assert decide_registration(registration(), USER) == Reserved(USER)


def test_opening_an_account_registers_the_user_at_version_1():
    state = opened()
    assert (state.version, state.name, state.role, state.deleted) == (1, sealed(NAME, "Priya"), Role.USER, False)
    assert (
        decide(
            command(
                OPEN_ACCOUNT,
                OpenAccount(email="a@b.in", email_key="k", name="n", phone="+911234567890", password_hash="h"),
                command_id="cmd-2",
            ),
            state,
        ).status
        == 409
    )


def test_an_open_account_command_seen_twice_emits_once():
    assert decide(command(OPEN_ACCOUNT, None, command_id="cmd-open"), opened()) == []


def test_a_registration_forwarded_again_after_the_account_forgot_it_is_already_applied():
    """The registry, killed before committing, forwards a registration again long after the account has
    moved on (its opening no longer remembered): the same address for the same new user id is that
    registration, already applied, not a second account."""
    state = opened()
    for n in range(25):
        step = command(UPDATE_PROFILE, UpdateProfile(changes=update(name=f"Priya {n}")), command_id=f"cmd-u{n}")
        [event] = decide(step, state)
        state = remember(evolve(state, event, user_id=USER, time=NOW), step.id, n + 1)
    assert not decided_before(state, "cmd-open")
    again = OpenAccount(email="a@b.in", email_key="email-x", name="n", phone="+911234567890", password_hash="h")
    assert decide(command(OPEN_ACCOUNT, again, command_id="cmd-open"), state) == []


def update(**changes: str) -> dict[str, str]:
    return {name: sealed(name, value) for name, value in changes.items()}


def test_profile_update_carries_the_whole_profile_sealed_and_the_changed_fields():
    [event] = decide(
        command(UPDATE_PROFILE, UpdateProfile(changes=update(name="Priya R."), expected_version=1)), opened()
    )
    assert event.type == USER_PROFILE_UPDATED
    assert (event.data.name, event.data.phone, event.data.changed_fields) == (
        sealed(NAME, "Priya R."),
        sealed(PHONE, "+919876543210"),
        ("name",),
    )
    assert unseal(KEY, USER, NAME, event.data.name) == "Priya R."
    assert evolve(opened(), event, user_id=USER, time=NOW).version == 2


def test_a_command_redelivered_after_later_ones_is_answered_with_the_version_it_left():
    """The account decider killed mid-batch restarts from a changelog holding the whole batch: a
    redelivered command emits nothing and is answered with its own version, not the account's latest."""
    state = opened()
    for n, name in enumerate(("Priya R.", "Priya Reddy"), start=1):
        step = command(UPDATE_PROFILE, UpdateProfile(changes=update(name=name)), command_id=f"cmd-u{n}")
        [event] = decide(step, state)
        state = remember(evolve(state, event, user_id=USER, time=NOW), step.id, n)
    assert state.version == 3
    again = command(UPDATE_PROFILE, UpdateProfile(changes=update(name="Priya R.")), command_id="cmd-u1")
    assert decide(again, state) == []
    assert (version_after(state, "cmd-open"), version_after(state, "cmd-u1"), version_after(state, "cmd-u2")) == (
        1,
        2,
        3,
    )
    assert remember(state, "cmd-u1", 1) == state
    restored = state_from_json(state_to_json(state))
    assert version_after(restored, "cmd-u1") == 2
    legacy = state_from_json({**state_to_json(state), "recentCommands": ["cmd-u1"]})
    assert decide(again, legacy) == [] and version_after(legacy, "cmd-u1") == 3


def test_an_update_to_the_same_values_changes_nothing():
    assert decide(command(UPDATE_PROFILE, UpdateProfile(changes=update(name="Priya"))), opened()) == []


def test_a_stale_if_match_is_409_and_a_stranger_is_403_and_an_admin_may():
    state = opened()
    assert (
        decide(command(UPDATE_PROFILE, UpdateProfile(changes=update(name="X"), expected_version=7)), state).status
        == 409
    )
    stranger = command(UPDATE_PROFILE, UpdateProfile(changes=update(name="X")), actor="user-mallory")
    assert decide(stranger, state).status == 403
    admin = command(UPDATE_PROFILE, UpdateProfile(changes=update(name="X"), actor_role=Role.ADMIN), actor="user-admin")
    assert decide(admin, state)[0].type == USER_PROFILE_UPDATED


def test_profile_fields_in_the_clear_or_unknown_are_refused_and_named():
    refused = decide(command(UPDATE_PROFILE, UpdateProfile(changes={"phone": "+919999999999"})), opened())
    assert refused.status == 422 and refused.errors[0].field == "phone"
    unknown = decide(command(UPDATE_PROFILE, UpdateProfile(changes={"email": "x@y.in"})), opened())
    assert unknown.status == 422 and unknown.errors[0].field == "email"


def test_deletion_forgets_the_person_and_later_commands_are_404():
    [event] = decide(command(DELETE_ACCOUNT, DeleteAccount()), opened())
    assert event.type == USER_DELETED
    gone = evolve(opened(), event, user_id=USER, time=NOW)
    assert (gone.deleted, gone.name, gone.phone, gone.version) == (True, None, None, 2)
    assert (
        decide(command(UPDATE_PROFILE, UpdateProfile(changes=update(name="X")), command_id="cmd-9"), gone).status == 404
    )
    assert decide(command(UPDATE_PROFILE, UpdateProfile(changes=update(name="X"))), None).status == 404


def test_a_property_count_is_recorded_only_when_it_changes():
    state = opened()
    [event] = decide(command(RECORD_PROPERTY_COUNT, RecordPropertyCount(property_count=3)), state)
    assert event.type == USER_PROPERTY_COUNT_UPDATED
    counted = evolve(state, event, user_id=USER, time=NOW)
    assert decide(command(RECORD_PROPERTY_COUNT, RecordPropertyCount(property_count=3), command_id="c2"), counted) == []


def test_the_state_survives_its_json_round_trip():
    state = opened()
    assert state_from_json(state_to_json(state)) == state
    assert USER_REGISTERED.endswith(".v1")


def test_a_closed_account_releases_its_email_to_the_registry_once():
    state = opened()
    assert state.email_key == "email-x"
    [event] = decide(command(DELETE_ACCOUNT, DeleteAccount(), command_id="cmd-del"), state)
    gone = evolve(state, event, user_id=USER, time=NOW)
    release = email_to_release(state, gone)
    assert release is not None and (release.user_id, release.email_key) == (USER, "email-x")
    assert email_to_release(gone, gone) is None  # already closed: nothing more to release
    assert email_to_release(state, state) is None  # not a deletion
    assert state_from_json(state_to_json(gone)).email_key == "email-x"


def test_a_closing_delists_the_listings_it_names_once_with_derived_command_ids():
    state = opened()
    deletion = command(DELETE_ACCOUNT, DeleteAccount(listings=("prop-a", "prop-b")), command_id="cmd-del")
    [event] = decide(deletion, state)
    gone = evolve(state, event, user_id=USER, time=NOW)
    assert listings_to_delist(deletion, state, gone) == ("prop-a", "prop-b")
    assert listings_to_delist(deletion, gone, gone) == ()  # already closed: sent with the first closing
    refused = command(DELETE_ACCOUNT, DeleteAccount(expected_version=99, listings=("prop-a",)), command_id="cmd-x")
    assert isinstance(decide(refused, state), Rejection) and listings_to_delist(refused, state, state) == ()
    # The id depends on the deletion and the listing only: a deletion decided again sends the same commands.
    assert delisting_command_id("cmd-del", "prop-a") == delisting_command_id("cmd-del", "prop-a")
    assert len({delisting_command_id(c, p) for c in ("cmd-del", "cmd-2") for p in ("prop-a", "prop-b")}) == 4


def test_a_deletion_names_only_listing_ids():
    with pytest.raises(ValidationError):
        DeleteAccount(listings=("user-priya",))


def test_the_registry_frees_an_address_only_for_the_account_holding_it():
    release = ReleaseEmail(user_id=USER, email_key="email-x")
    assert decide_release(release, USER)
    assert not decide_release(release, "user-someone-new")
    assert not decide_release(release, None)
