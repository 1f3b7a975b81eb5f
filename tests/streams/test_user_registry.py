"""The user registry's agent (streams/users/registry_app.py), registrations in, no broker: the first
registration of an address reserves it in the `emails` table and is forwarded as an account opening;
another account's registration of it is refused with 409; a release frees it."""

from schemas.codec import encode
from schemas.envelope import new_event
from schemas.outcomes import COMMAND_OUTCOME
from schemas.topics import (
    COMMAND_OUTCOMES,
    DEAD_LETTERS,
    USER_COMMANDS,
    USER_REGISTRATIONS,
    USER_REGISTRY_EMAILS_CHANGELOG,
)
from schemas.users import OPEN_ACCOUNT, RELEASE_EMAIL, ReleaseEmail
from streams.users.registry_app import decide_registrations, emails
from tests.support.topology import kafka_partition, registration, running

EMAIL_KEY = "email-" + "ab" * 32


def release(user_id: str):
    data = ReleaseEmail(user_id=user_id, email_key=EMAIL_KEY)
    return new_event(type=RELEASE_EMAIL, subject=EMAIL_KEY, data=data.to_wire(), service="user-account")


async def test_first_registration_reserves_the_address_others_get_409_a_release_frees_it():
    partition = kafka_partition(USER_REGISTRATIONS.name, EMAIL_KEY.encode())
    async with running(decide_registrations) as (agent, producer):
        await agent.put(
            encode(registration("user-1", EMAIL_KEY, "cmd-reg-1")), key=EMAIL_KEY.encode(), partition=partition
        )
        [forwarded] = await producer.until(USER_COMMANDS.name, 1)
        assert forwarded.key == b"user-1"
        assert (forwarded.envelope.type, forwarded.envelope.id) == (OPEN_ACCOUNT, "cmd-reg-1")
        assert emails[EMAIL_KEY] == "user-1"
        [reserved] = producer.to(USER_REGISTRY_EMAILS_CHANGELOG.name)
        assert reserved.partition == partition  # the table's changelog is co-partitioned with its source

        await agent.put(
            encode(registration("user-2", EMAIL_KEY, "cmd-reg-2")), key=EMAIL_KEY.encode(), partition=partition
        )
        [answer] = await producer.until(COMMAND_OUTCOMES.name, 1)
        assert (answer.key, answer.envelope.type) == (b"cmd-reg-2", COMMAND_OUTCOME)
        assert (answer.envelope.data["verdict"], answer.envelope.data["status"]) == ("rejected", 409)
        assert emails[EMAIL_KEY] == "user-1"
        assert len(producer.to(USER_COMMANDS.name)) == 1

        await agent.put(encode(release("user-1")), key=EMAIL_KEY.encode(), partition=partition)
        changelog = await producer.until(USER_REGISTRY_EMAILS_CHANGELOG.name, 2)
        assert changelog[-1].value is None and changelog[-1].partition == partition
        assert emails.get(EMAIL_KEY) is None
        assert producer.to(DEAD_LETTERS.name) == []


async def test_a_registration_keyed_otherwise_is_dead_lettered_and_reserves_nothing():
    async with running(decide_registrations) as (agent, producer):
        await agent.put(encode(registration("user-3", EMAIL_KEY, "cmd-reg-3")), key=b"email-other", partition=0)
        [letter] = await producer.until(DEAD_LETTERS.name, 1)
        assert letter.key == b"email-other"
        assert b"expected its email key" in letter.headers["dlq.error"]
        assert producer.to(USER_COMMANDS.name) == []
