"""The user registry: `python -m streams.users.registry_app worker -l info`.

Consumer group `user-registry`. Reads `user-registrations` (keyed by the email key), keeps
`emails` (email key -> user id; co-partitioned with the registrations: same key, six partitions) and
for each registration decides (pure) whether the address is free. First wins: the table takes the
reservation and the registration is forwarded to `user-commands` as `user.open_account.v1` under the
same command id (the account decider emits `user.registered.v1` and answers the waiting endpoint).
The others are answered 409 on `command-outcomes` here. When an account closes, the account decider
sends `user.release_email.v1` here and the address is freed (if that account still holds it).
"""

import logging

import faust

from config import get_settings
from schemas.codec import EventDecodeError, decode, encode
from schemas.envelope import Envelope
from schemas.outcomes import Rejection
from schemas.topics import COMMAND_OUTCOMES, USER_COMMANDS, USER_REGISTRATIONS
from schemas.users import OPEN_ACCOUNT, REGISTER_USER, RELEASE_EMAIL, OpenAccount, RegisterUser, ReleaseEmail
from streams.app import create_app, run_worker
from streams.deciding import REGISTRY_SOURCE, dead_letter_command, outcome_envelope
from streams.users.decider import decide_registration, decide_release

log = logging.getLogger("streams.users.registry")

REGISTRY = "user-registry"


def read_registration(envelope: Envelope) -> RegisterUser | ReleaseEmail:
    model = {REGISTER_USER: RegisterUser, RELEASE_EMAIL: ReleaseEmail}.get(envelope.type)
    if model is None:
        raise EventDecodeError(f"unknown registration command {envelope.type!r}")
    try:
        return model.model_validate(envelope.data)
    except ValueError as exc:
        raise EventDecodeError(f"invalid {envelope.type}: {exc}") from None


def open_account_command(cause: Envelope, registration: RegisterUser) -> Envelope:
    """Same id as the registration: the account decider answers the endpoint waiting on that id."""
    return Envelope(
        id=cause.id,
        type=OPEN_ACCOUNT,
        source=REGISTRY_SOURCE,
        subject=registration.user_id,
        time=cause.time,
        userid=registration.user_id,
        sessionid=cause.sessionid,
        correlationid=cause.correlationid or cause.id,
        causationid=cause.id,
        data=OpenAccount(
            email=registration.email,
            email_key=registration.email_key,
            name=registration.name,
            phone=registration.phone,
            password_hash=registration.password_hash,
            role=registration.role,
        ).to_wire(),
    )


settings = get_settings()
app = create_app(REGISTRY, settings)
registrations_topic = app.topic(USER_REGISTRATIONS.name, key_serializer="raw", value_serializer="raw")
emails = app.Table("emails", partitions=USER_REGISTRATIONS.partitions, key_type=str)


async def handle(key: bytes, cause: Envelope) -> None:
    registration = read_registration(cause)
    if key != registration.email_key.encode() or cause.subject != registration.email_key:
        raise EventDecodeError(f"registration keyed {key!r}, expected its email key")
    if isinstance(registration, ReleaseEmail):
        if decide_release(registration, emails.get(registration.email_key)):
            emails.pop(registration.email_key, None)
        return
    decision = decide_registration(registration, emails.get(registration.email_key))
    if isinstance(decision, Rejection):
        outcome = decision.outcome(cause.id, registration.email_key)
        await app.producer.send_and_wait(
            COMMAND_OUTCOMES.name,
            cause.id.encode(),
            encode(outcome_envelope(REGISTRY_SOURCE, cause.id, registration.user_id, outcome, cause.time)),
            partition=None,
            timestamp=None,
            headers=None,
        )
        return
    emails[registration.email_key] = decision.user_id
    await app.producer.send_and_wait(
        USER_COMMANDS.name,
        decision.user_id.encode(),
        encode(open_account_command(cause, registration)),
        partition=None,
        timestamp=None,
        headers=None,
    )


@app.agent(registrations_topic)
async def decide_registrations(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        message = event.message
        try:
            await handle(message.key, decode(message.value))
        except Exception as exc:
            await dead_letter_command(app, REGISTRY, message, exc)


if __name__ == "__main__":
    run_worker(app)
