"""The property decider's agent (streams/properties/decider_app.py), commands in, no broker: events to
`properties` keyed by the property, the state in `properties-state` (its changelog on the command's own
partition), the answer on `command-outcomes` naming where the events were written; a refused command
changes nothing; a command keyed otherwise is dead-lettered."""

from schemas.codec import encode
from schemas.envelope import Envelope, new_event
from schemas.outcomes import COMMAND_OUTCOME
from schemas.properties import (
    CREATE_PROPERTY,
    PROPERTY_CREATED,
    PROPERTY_UPDATED,
    UPDATE_PROPERTY,
    CreateProperty,
    ListingFields,
    UpdateProperty,
)
from schemas.topics import (
    COMMAND_OUTCOMES,
    DEAD_LETTERS,
    DLQ_ERROR_HEADER,
    PROPERTIES,
    PROPERTY_COMMANDS,
    PROPERTY_DECIDER_STATE_CHANGELOG,
)
from streams.properties.decider import state_from_json
from streams.properties.decider_app import decide_property_commands, states
from tests.support.topology import Sent, kafka_partition, running

LISTING = ListingFields.model_validate(
    {
        "title": "3BHK in Gachibowli",
        "location": "Gachibowli",
        "price": 9500000,
        "propertyType": "APARTMENT",
        "bedrooms": 3,
        "bathrooms": 2,
    }
)


def command(kind: str, property_id: str, data, *, by: str, command_id: str) -> Envelope:
    return new_event(
        type=kind, subject=property_id, data=data.to_wire(), service="property", userid=by, event_id=command_id
    )


def creation(property_id: str, command_id: str) -> Envelope:
    return command(CREATE_PROPERTY, property_id, CreateProperty(listing=LISTING), by="user-1", command_id=command_id)


async def decided(agent, producer, envelope: Envelope, answered: int) -> Sent:
    """Put a command on its property's partition and return its answer, the `answered`-th so far."""
    key = envelope.subject.encode()
    await agent.put(encode(envelope), key=key, partition=kafka_partition(PROPERTY_COMMANDS.name, key))
    return (await producer.until(COMMAND_OUTCOMES.name, answered))[answered - 1]


async def test_a_create_then_an_update_are_decided_into_events_state_and_answers():
    property_id = "prop-topology1"
    partition = kafka_partition(PROPERTY_COMMANDS.name, property_id.encode())
    async with running(decide_property_commands) as (agent, producer):
        answer = await decided(agent, producer, creation(property_id, "cmd-p1"), 1)
        [created] = producer.to(PROPERTIES.name)
        assert (created.key, created.envelope.type, created.envelope.sequence) == (
            property_id.encode(),
            PROPERTY_CREATED,
            1,
        )
        assert created.envelope.causationid == "cmd-p1"
        assert (answer.key, answer.envelope.type) == (b"cmd-p1", COMMAND_OUTCOME)
        assert answer.envelope.data["verdict"] == "accepted"
        assert answer.envelope.data["positions"] == [f"{PROPERTIES.name}:{created.partition}:{created.offset}"]
        state = state_from_json(states[property_id])
        assert (state.version, state.owner_id, state.listing.title) == (1, "user-1", LISTING.title)
        [changelog] = producer.to(PROPERTY_DECIDER_STATE_CHANGELOG.name)
        assert (changelog.key, changelog.partition) == (f'"{property_id}"'.encode(), partition)

        update = command(
            UPDATE_PROPERTY, property_id, UpdateProperty(changes={"price": 9000000}), by="user-1", command_id="cmd-p2"
        )
        assert (await decided(agent, producer, update, 2)).envelope.data["verdict"] == "accepted"
        updated = producer.to(PROPERTIES.name)[1]
        assert (updated.envelope.type, updated.envelope.sequence) == (PROPERTY_UPDATED, 2)
        assert updated.partition == created.partition  # one property, one partition of `properties`
        assert state_from_json(states[property_id]).listing.price == 9000000


async def test_a_refused_command_is_answered_and_changes_nothing():
    property_id = "prop-topology2"
    async with running(decide_property_commands) as (agent, producer):
        await decided(agent, producer, creation(property_id, "cmd-p3"), 1)
        stranger = command(
            UPDATE_PROPERTY, property_id, UpdateProperty(changes={"price": 1}), by="user-2", command_id="cmd-p4"
        )
        refused = await decided(agent, producer, stranger, 2)
        assert (refused.envelope.data["verdict"], refused.envelope.data["status"]) == ("rejected", 403)
        assert len(producer.to(PROPERTIES.name)) == 1
        assert len(producer.to(PROPERTY_DECIDER_STATE_CHANGELOG.name)) == 1
        assert state_from_json(states[property_id]).listing.price == LISTING.price


async def test_a_command_keyed_otherwise_is_dead_lettered_undecided():
    property_id = "prop-topology3"
    async with running(decide_property_commands) as (agent, producer):
        create = creation(property_id, "cmd-p5")
        await agent.put(encode(create), key=b"prop-elsewhere", partition=0)
        [letter] = await producer.until(DEAD_LETTERS.name, 1)
        assert letter.key == b"prop-elsewhere"
        assert b"is not its property id" in letter.headers[DLQ_ERROR_HEADER]
        assert producer.to(PROPERTIES.name) == [] and producer.to(COMMAND_OUTCOMES.name) == []
        assert states.get(property_id) is None
