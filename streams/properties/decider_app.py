"""The property decider worker: `python -m streams.properties.decider_app worker -l info`.

Consumer group `property-decider`. Reads `property-commands`, keeps each property's state in the
`properties-state` table (co-partitioned with the commands: same key, six partitions), and for each
command: decide (pure) -> produce the events to `properties` -> fold them into the table -> answer on
`command-outcomes`. At-least-once: a command redelivered after a crash is decided again against the
state the table had; the events it yields carry ids derived from the command id and its time, so a
duplicate is the same event (same id, time and sequence), which every sink already ignores.
"""

import logging
from collections.abc import Awaitable
from typing import Any

import faust
from aiokafka.structs import RecordMetadata

from config import get_settings
from schemas.topics import PROPERTY_COMMANDS
from streams.app import create_app, run_worker
from streams.batches import take_batches
from streams.deciding import dead_letter_command
from streams.properties.command_batches import PropertyCommandBatches

log = logging.getLogger("streams.properties.decider")

DECIDER = "property-decider"


settings = get_settings()
app = create_app(DECIDER, settings)
commands_topic = app.topic(PROPERTY_COMMANDS.name, key_serializer="raw", value_serializer="raw")


class CommandStateTable(faust.Table):  # type: ignore[misc]  # Faust's classes are untyped
    """A table written from a batch loop: Faust finds the changelog partition through the event being
    iterated, which a batch loop has not got, so the loop says which command it is deciding. The
    changelog record goes to that command's partition: the table stays co-partitioned with it."""

    deciding_partition: int | None = None

    def partition_for_key(self, key: object) -> int | None:
        if self.deciding_partition is None:
            raise RuntimeError("table written outside a decision")
        return self.deciding_partition


states = app.tables.add(
    CommandStateTable(
        app,
        name="properties-state",
        beacon=app.tables.beacon,
        partitions=PROPERTY_COMMANDS.partitions,
        # JSON keys and values: Faust's defaults, which its changelog recovery reads back.
        key_type=str,
    )
)


class FaustStateTable:
    """The `properties-state` table as the batch loop sees it."""

    def __init__(self, table: CommandStateTable) -> None:
        self._table = table

    def get(self, property_id: str) -> dict[str, Any] | None:
        state: dict[str, Any] | None = self._table.get(property_id)
        return state

    def put(self, partition: int, property_id: str, state: dict[str, Any] | None) -> None:
        self._table.deciding_partition = partition
        try:
            if state is None:
                self._table.pop(property_id, None)
            else:
                self._table[property_id] = state
        finally:
            self._table.deciding_partition = None


async def _send(topic: str, key: bytes, value: bytes) -> Awaitable[RecordMetadata]:
    return await app.producer.send(topic, key, value, partition=None, timestamp=None, headers=None)


async def _dead_letter(message: faust.types.Message, exc: Exception) -> None:
    await dead_letter_command(app, DECIDER, message, exc)


batches = PropertyCommandBatches(_send, FaustStateTable(states), _dead_letter)


@app.agent(commands_topic)
async def decide_property_commands(stream: faust.StreamT[bytes]) -> None:
    # A short window: under load a batch fills at once; alone, a command waits at most this long.
    async for events in take_batches(stream, settings.decider_batch_size, within=settings.decider_batch_seconds):
        await batches.decide_batch([event.message for event in events])


if __name__ == "__main__":
    run_worker(app)
