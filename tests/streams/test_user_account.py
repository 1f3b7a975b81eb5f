"""The account decider's agent (streams/users/account_app.py), commands in, no broker: the registry's
forward opens the account (`user.registered.v1` on `users`, the state in `accounts`, the answer to the
waiting registration); closing it emits `user.deleted.v1`, hands the email back to the registry and
delists each listing it names; the same command again emits nothing new. Redelivered after a crash from
its own offsets, a log longer than the state remembers is answered again only where the answer is the
same."""

from schemas.codec import encode
from schemas.envelope import Envelope, new_event
from schemas.personal import NAME, seal
from schemas.properties import DELETE_PROPERTY
from schemas.topics import (
    COMMAND_OUTCOMES,
    DEAD_LETTERS,
    PROPERTY_COMMANDS,
    USER_ACCOUNT_STATE_CHANGELOG,
    USER_COMMANDS,
    USER_REGISTRATIONS,
    USERS,
)
from schemas.users import (
    DELETE_ACCOUNT,
    RELEASE_EMAIL,
    UPDATE_PROFILE,
    USER_DELETED,
    USER_REGISTERED,
    DeleteAccount,
    RegisterUser,
    UpdateProfile,
    delisting_command_id,
)
from streams.positions import RawRecord, SourcePosition
from streams.remembered_commands import REMEMBERED_COMMANDS
from streams.users.account_app import accounts, decide_account_commands
from streams.users.decider import state_from_json
from streams.users.registry_app import open_account_command
from tests.support.topology import kafka_partition, put_records, registration, running

USER_ID = "user-topology1"
EMAIL_KEY = "email-" + "cd" * 32


def opening() -> Envelope:
    cause = registration(USER_ID, EMAIL_KEY, "cmd-open1")
    return open_account_command(cause, RegisterUser.model_validate(cause.data))


def closing(listings: tuple[str, ...]) -> Envelope:
    return new_event(
        type=DELETE_ACCOUNT,
        subject=USER_ID,
        data=DeleteAccount(listings=listings).to_wire(),
        service="user",
        userid=USER_ID,
        event_id="cmd-close1",
    )


async def test_an_account_is_opened_then_closed_releasing_its_email_and_delisting_its_listings():
    partition = kafka_partition(USER_COMMANDS.name, USER_ID.encode())
    async with running(decide_account_commands) as (agent, producer):
        await agent.put(encode(opening()), key=USER_ID.encode(), partition=partition)
        [answer] = await producer.until(COMMAND_OUTCOMES.name, 1)
        [registered] = producer.to(USERS.name)
        assert (registered.key, registered.envelope.type, registered.envelope.sequence) == (
            USER_ID.encode(),
            USER_REGISTERED,
            1,
        )
        assert answer.key == b"cmd-open1"  # the registration's own id: its endpoint is waiting on it
        assert answer.envelope.data["verdict"] == "accepted"
        assert answer.envelope.data["positions"] == [f"{USERS.name}:{registered.partition}:{registered.offset}"]
        assert state_from_json(accounts[USER_ID]).email_key == EMAIL_KEY
        [changelog] = producer.to(USER_ACCOUNT_STATE_CHANGELOG.name)
        assert changelog.partition == partition

        listings = ("prop-a1", "prop-b2")
        await agent.put(encode(closing(listings)), key=USER_ID.encode(), partition=partition)
        answers = await producer.until(COMMAND_OUTCOMES.name, 2)
        assert answers[1].envelope.data["verdict"] == "accepted"
        assert [sent.envelope.type for sent in producer.to(USERS.name)] == [USER_REGISTERED, USER_DELETED]
        [release] = producer.to(USER_REGISTRATIONS.name)
        assert (release.key, release.envelope.type) == (EMAIL_KEY.encode(), RELEASE_EMAIL)
        delistings = producer.to(PROPERTY_COMMANDS.name)
        assert [(sent.key, sent.envelope.type, sent.envelope.id) for sent in delistings] == [
            (listing.encode(), DELETE_PROPERTY, delisting_command_id("cmd-close1", listing)) for listing in listings
        ]
        assert state_from_json(accounts[USER_ID]).deleted

        # Redelivered after a crash: answered again, nothing emitted twice.
        await agent.put(encode(closing(listings)), key=USER_ID.encode(), partition=partition)
        answers = await producer.until(COMMAND_OUTCOMES.name, 3)
        assert answers[2].envelope.data["verdict"] == "accepted"
        assert len(producer.to(USERS.name)) == 2
        assert len(producer.to(USER_REGISTRATIONS.name)) == 1
        assert len(producer.to(PROPERTY_COMMANDS.name)) == len(listings)
        assert producer.to(DEAD_LETTERS.name) == []


def renaming(n: int) -> Envelope:
    name = seal(bytes(range(32)), USER_ID, NAME, f"Priya {n}")
    return new_event(
        type=UPDATE_PROFILE,
        subject=USER_ID,
        data=UpdateProfile(changes={"name": name}).to_wire(),
        service="user",
        userid=USER_ID,
        event_id=f"cmd-rename{n}",
    )


async def test_a_log_redelivered_after_a_crash_is_answered_again_only_where_the_state_still_remembers():
    """Killed before its offsets were committed, the decider decides its log again from the changelog's
    state, which has moved on. More renames than the state remembers: the forgotten ones (and the
    opening) are not answered again (their offsets are at or below the one the state was decided
    through), the remembered ones are answered with the version each left, and nothing is emitted twice."""
    partition = kafka_partition(USER_COMMANDS.name, USER_ID.encode())
    log = [opening(), *(renaming(n) for n in range(REMEMBERED_COMMANDS + 5))]
    records = [
        RawRecord(USER_ID.encode(), encode(envelope), SourcePosition(USER_COMMANDS.name, partition, offset))
        for offset, envelope in enumerate(log)
    ]
    async with running(decide_account_commands) as (agent, producer):
        await put_records(agent, records)
        first = {sent.key: sent.envelope.data for sent in await producer.until(COMMAND_OUTCOMES.name, len(log))}
        events = len(producer.to(USERS.name))
        assert events == len(log)

        await put_records(agent, records)  # the same log from the same offsets, as after a crash
        remembered = {envelope.id.encode() for envelope in log[-REMEMBERED_COMMANDS:]}
        answers = await producer.until(COMMAND_OUTCOMES.name, len(log) + len(remembered))
        # The registry forwards the opening again (a new offset: it was killed too), then one more rename:
        # every redelivered record has been handled once that is answered.
        forwarded = SourcePosition(USER_COMMANDS.name, partition, len(log))
        later = SourcePosition(USER_COMMANDS.name, partition, len(log) + 1)
        await put_records(
            agent,
            [
                RawRecord(USER_ID.encode(), encode(opening()), forwarded),
                RawRecord(USER_ID.encode(), encode(renaming(999)), later),
            ],
        )
        answers = await producer.until(COMMAND_OUTCOMES.name, len(log) + len(remembered) + 2)
        again, reopened, renamed = answers[len(log) : -2], answers[-2], answers[-1]
        assert (reopened.key, reopened.envelope.data["verdict"], reopened.envelope.data["version"]) == (
            b"cmd-open1",
            "accepted",
            1,
        )
        assert renamed.envelope.data["version"] == len(log) + 1

    assert {sent.key for sent in again} == remembered

    def verdict(answer: dict) -> tuple:
        return answer["verdict"], answer["version"], answer.get("status")

    assert [verdict(sent.envelope.data) for sent in again] == [verdict(first[sent.key]) for sent in again]
    assert len(producer.to(USERS.name)) == events + 1
    assert producer.to(DEAD_LETTERS.name) == []
