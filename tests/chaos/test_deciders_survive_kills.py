"""SIGKILL the property decider twice while listings are updated through the property service (a stack of
this test's own: the deciders' groups are the shared stack's real ones). A decider killed
mid-batch has produced some of the batch's answers and table changes but committed none of its offsets:
its successor decides those commands again against the table the changelog restored. Every command
answered more than once is answered the same way each time (verdict, version, status), and every
event of the log is one decision: copies of an event id are the same event."""

import asyncio
import random
import uuid
from collections import defaultdict

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from api.common.auth import issue_access_token
from api.services import by_name
from schemas.topics import COMMAND_OUTCOMES, PROPERTIES
from tests.support.command_load import CommandLoad
from tests.support.processes import WorkerProcess
from tests.support.property_projection import listing
from tests.support.services import ServiceProcess
from tests.support.waiting import eventually

LISTINGS = 6
RATE = 20.0
KILLS = 2
REGISTRATION_RATE = 5.0


# Long for an import-heavy service on a machine shared with other suites.
SERVICE_START = 120.0


async def read_all(bootstrap: str, topic: str, partitions: int, since: dict[int, int] | None = None) -> list[dict]:
    """Every record of `topic` (from `since`, per partition, when given), decoded."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    found = []
    try:
        every = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(every)
        await consumer.seek_to_beginning(*every)
        for tp in every:
            if since:
                consumer.seek(tp, since[tp.partition])
        ends = await consumer.end_offsets(every)
        while any([await consumer.position(p) < ends[p] for p in every]):
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                found += [orjson.loads(message.value) for message in messages]
    finally:
        await consumer.stop()
    return found


async def assert_each_command_answered_one_way(
    bootstrap: str, actors: set[str] | None, what: str, load: CommandLoad, since: dict[int, int] | None = None
) -> None:
    """Per command id, every answer on `command-outcomes` the same (verdict, version, status); the
    commands of `actors`, or all since `since`."""
    outcomes = defaultdict(list)
    for envelope in await read_all(bootstrap, COMMAND_OUTCOMES.name, COMMAND_OUTCOMES.partitions, since):
        if actors is None or envelope.get("userid") in actors:
            data = envelope["data"]
            outcomes[data["commandId"]].append((data["verdict"], data.get("version"), data.get("status")))
    repeated = {command: answers for command, answers in outcomes.items() if len(answers) > 1}
    differing = {command: answers for command, answers in repeated.items() if len(set(answers)) > 1}
    statuses = sorted({str(a.status) for a in load.answers})
    print(
        f"\n{what} ({KILLS} kills): answered {statuses}, {len(outcomes)} commands decided, "
        f"{len(repeated)} answered more than once, {len(differing)} differently"
    )
    assert repeated, "no command was decided twice: the kills cut no batch, so they tested nothing"
    assert differing == {}


async def assert_each_event_is_one_decision(bootstrap: str, topic, actors: set[str]) -> None:
    """A decision taken again yields the very same events (ids derived from the command): copies of an id
    are the same bytes of event."""
    copies = defaultdict(set)
    for event in await read_all(bootstrap, topic.name, topic.partitions):
        if event.get("userid") in actors:
            copies[event["id"]].add(orjson.dumps(event, option=orjson.OPT_SORT_KEYS))
    assert copies and all(len(versions) == 1 for versions in copies.values())


async def kill_twice_under(load: CommandLoad, worker: WorkerProcess, decided: set[int]) -> None:
    """Kill `worker` twice, each time once a few more commands were decided (answered with a status of
    `decided`), then load on until some more are decided after its last restart."""

    async def count() -> int:
        return sum(1 for a in load.answers if a.status in decided)

    running = asyncio.create_task(load.run())
    for _ in range(KILLS + 1):
        floor = await count() + int(load.rate * 3)
        await eventually(count, lambda n, f=floor: n >= f, within=240)
        if _ < KILLS:
            worker.kill()
            worker.start()
    load.stop()
    await running


async def test_a_killed_property_decider_answers_every_command_the_same_each_time(own_stack, tmp_path):
    env = own_stack.env()
    decider = WorkerProcess("streams.properties.decider_app", env, tmp_path / "property-decider.log")
    service = ServiceProcess(by_name("property"), tmp_path / "property-service.log", env)
    owner = f"user-kills-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {issue_access_token(owner, 'USER')}"}
    decider.start()
    await service.start(within=SERVICE_START)
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as api:

            async def create(n: int) -> int | None:
                try:
                    return (await api.post("/api/properties", json=listing(n), headers=auth)).status_code
                except httpx.TimeoutException:
                    return None

            await eventually(lambda: create(0), lambda status: status == 201, within=240, every=0.5)
            ids = []
            for n in range(LISTINGS):
                made = await api.post("/api/properties", json=listing(n), headers=auth)
                assert made.status_code == 201, made.text
                ids.append(made.json()["data"]["id"])

            def change(n: int):
                # Each a new price on one of a few listings: a batch holds several commands of one listing,
                # so a command decided again finds the later ones of its batch in the restored table.
                return api.put(f"/api/properties/{random.choice(ids)}", json={"price": 6_000_000 + n}, headers=auth)

            load = CommandLoad(change, RATE, 60)
            await kill_twice_under(load, decider, {200})
    finally:
        service.stop()
        decider.stop()

    statuses = {a.status for a in load.answers}
    assert statuses <= {200, 503}, statuses

    await assert_each_command_answered_one_way(
        own_stack.kafka_bootstrap, {owner}, f"property decider, {len(load.answers)} updates", load
    )
    await assert_each_event_is_one_decision(own_stack.kafka_bootstrap, PROPERTIES, {owner})
