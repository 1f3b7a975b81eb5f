"""The user account decider: `python -m streams.users.account_app worker -l info`.

Consumer group `user-account`. Reads `user-commands` (keyed by user id), keeps each account's state in
`accounts` (co-partitioned: same key, six partitions), and for each command: decide (pure) -> produce
the events to `users` -> fold them into the table -> answer on `command-outcomes`. A closed account's
email is handed back to the registry (`user.release_email.v1` on `user-registrations`) and its listings
are delisted (`property.delete.v1` on `property-commands`, one per listing the deletion names). Both
are sent before the table is written, with ids derived from the deletion: a crash in between decides
the deletion again and sends the same commands, which their deciders answer once. The only writer of
sequenced events on `users`. Accounts are opened by the registry's forward (`user.open_account.v1`),
which reaches this partition before any later command about the user: the endpoint answered 201 only
after this decider emitted the registration.
"""

import logging

import faust

from config import get_settings
from schemas.codec import EventDecodeError, decode, encode
from schemas.envelope import Envelope, format_time
from schemas.outcomes import CommandOutcome, Verdict
from schemas.properties import DELETE_PROPERTY, DeleteProperty
from schemas.registry import EventData
from schemas.topics import COMMAND_OUTCOMES, PROPERTY_COMMANDS, USER_COMMANDS, USER_REGISTRATIONS, USERS
from schemas.users import (
    ACCOUNT_COMMANDS,
    OPEN_ACCOUNT,
    RELEASE_EMAIL,
    DeleteAccount,
    ReleaseEmail,
    delisting_command_id,
)
from streams.app import create_app, run_worker
from streams.deciding import (
    ACCOUNT_SOURCE,
    command_data,
    dead_letter_command,
    decided_event,
    event_id,
    outcome_envelope,
)
from streams.remembered_commands import forgotten_redelivery, remember, version_after
from streams.users.decider import (
    OPENED_AT,
    AccountState,
    Command,
    NewEvent,
    Rejection,
    decide,
    email_to_release,
    evolve,
    listings_to_delist,
    state_from_json,
    state_to_json,
)

log = logging.getLogger("streams.users.account")

ACCOUNT = "user-account"
RELEASE_INDEX = 1000  # after any event index of the same command


def read_command(envelope: Envelope) -> Command:
    data = command_data(envelope, ACCOUNT_COMMANDS, "account")
    assert envelope.userid is not None  # command_data refused it otherwise
    return Command(envelope.id, envelope.type, envelope.subject, envelope.userid, envelope.time, data)


def event_envelope(command: Command, cause: Envelope, event: NewEvent, index: int, sequence: int) -> Envelope:
    return decided_event(
        ACCOUNT_SOURCE, cause, command.user_id, command.actor_id, event.data, event.type, index, sequence
    )


def follow_up(command: Command, cause: Envelope, id_: str, type_: str, subject: str, data: EventData) -> Envelope:
    """A command a decision sends on to another decider, on behalf of the same actor and request."""
    return Envelope(
        id=id_,
        type=type_,
        source=ACCOUNT_SOURCE,
        subject=subject,
        time=command.time,
        userid=command.actor_id,
        sessionid=cause.sessionid,
        correlationid=cause.correlationid or cause.id,
        causationid=cause.id,
        data=data.to_wire(),
    )


def release_command(command: Command, cause: Envelope, release: ReleaseEmail) -> Envelope:
    """Its id derives from the deletion's command id: a redecided deletion sends the same release."""
    return follow_up(command, cause, event_id(command.id, RELEASE_INDEX), RELEASE_EMAIL, release.email_key, release)


def delisting_command(command: Command, cause: Envelope, property_id: str) -> Envelope:
    """The owner's (or the closing admin's) delete of one listing, as the property service would send it."""
    assert isinstance(command.data, DeleteAccount)
    delete = DeleteProperty(actor_role=command.data.actor_role)
    return follow_up(
        command, cause, delisting_command_id(command.id, property_id), DELETE_PROPERTY, property_id, delete
    )


settings = get_settings()
app = create_app(ACCOUNT, settings)
commands_topic = app.topic(USER_COMMANDS.name, key_serializer="raw", value_serializer="raw")
accounts = app.Table("accounts", partitions=USER_COMMANDS.partitions, key_type=str)


async def _produce(topic: str, key: bytes, envelope: Envelope) -> str:
    metadata = await app.producer.send_and_wait(
        topic, key, encode(envelope), partition=None, timestamp=None, headers=None
    )
    return f"{metadata.topic}:{metadata.partition}:{metadata.offset}"


async def handle(key: bytes, offset: int, cause: Envelope) -> None:
    """Decide the command at `offset` of its partition. A command redelivered after a crash that the
    account decided and has since forgotten is not answered again: its answer left the first time (each
    command is answered before the next is decided), and today's state could answer another version."""
    command = read_command(cause)
    if key != command.user_id.encode():
        raise EventDecodeError(f"command key {key!r} is not its user id {command.user_id}")
    stored = accounts.get(command.user_id)
    state: AccountState | None = state_from_json(stored) if stored else None
    if forgotten_redelivery(state, command.id, offset):
        log.info("command %s at offset %d was decided before this restart; not answered again", command.id, offset)
        return
    decision = decide(command, state)
    if isinstance(decision, Rejection):
        outcome = decision.outcome(command.id, command.user_id, state.version if state else None)
    else:
        before, positions = state, []
        for index, event in enumerate(decision):
            state = evolve(state, event, user_id=command.user_id, time=command.time)
            positions.append(
                await _produce(USERS.name, key, event_envelope(command, cause, event, index, state.version))
            )
        assert state is not None
        release = email_to_release(before, state)
        if release is not None:
            await _produce(
                USER_REGISTRATIONS.name, release.email_key.encode(), release_command(command, cause, release)
            )
        for property_id in listings_to_delist(command, before, state):
            await _produce(PROPERTY_COMMANDS.name, property_id.encode(), delisting_command(command, cause, property_id))
        state = remember(state, command.id, offset)
        accounts[command.user_id] = state_to_json(state)
        outcome = CommandOutcome(
            command_id=command.id,
            aggregate_id=command.user_id,
            verdict=Verdict.ACCEPTED,
            version=OPENED_AT if command.type == OPEN_ACCOUNT else version_after(state, command.id),
            positions=tuple(positions),
            result={"createdAt": format_time(state.created_at), "propertyCount": state.property_count},
        )
    await _produce(
        COMMAND_OUTCOMES.name,
        command.id.encode(),
        outcome_envelope(ACCOUNT_SOURCE, command.id, command.actor_id, outcome, command.time),
    )


@app.agent(commands_topic)
async def decide_account_commands(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        message = event.message
        try:
            await handle(message.key, message.offset, decode(message.value))
        except Exception as exc:
            await dead_letter_command(app, ACCOUNT, message, exc)


if __name__ == "__main__":
    run_worker(app)
