"""SIGKILL the deciders twice under load through their services (a stack of this test's own: the deciders'
groups are the shared stack's real ones): the property decider while listings are updated, the user
registry and the account decider while users register and rename themselves. A decider killed
mid-batch has produced some of the batch's answers and table changes but committed none of its offsets:
its successor decides those commands again against the table the changelog restored. Every command
answered more than once is answered the same way each time (verdict, version, status), and every
event of the log is one decision: copies of an event id are the same event. The user tables restore:
no email is held by two accounts, and each account takes its next update at the version of the log."""

import asyncio
import random
import uuid
from collections import defaultdict

import httpx
import orjson

from api.common.auth import issue_access_token
from api.services import by_name
from schemas.topics import COMMAND_OUTCOMES, PROPERTIES, USERS
from schemas.users import USER_REGISTERED
from tests.support.command_load import CommandLoad
from tests.support.processes import WorkerProcess
from tests.support.property_projection import listing
from tests.support.services import ServiceProcess
from tests.support.topic_log import end_offsets, read_all
from tests.support.users import TEST_SERVICE_ENV, registration
from tests.support.waiting import eventually

LISTINGS = 6
RATE = 20.0
KILLS = 2
USERS_RENAMED = 6
USER_RATE = 15.0
REGISTERING = 5  # every fifth command of the user load is a registration (argon2 is the costly part)


# Long for an import-heavy service on a machine shared with other suites.
SERVICE_START = 120.0


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
    statuses = {str(status): load.count(status) for status in sorted({a.status for a in load.answers}, key=str)}
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


async def kill_twice_under(load: CommandLoad, workers: list[WorkerProcess], decided: set[int]) -> None:
    """Kill the workers twice (each kill all of them, in a random order, a moment apart), each time once a
    few more commands were decided (answered with a status of `decided`), then load on until some more
    are decided after their last restart."""

    async def count() -> int:
        return sum(1 for a in load.answers if a.status in decided)

    running = asyncio.create_task(load.run())
    for _ in range(KILLS + 1):
        floor = await count() + int(load.rate * 3)
        await eventually(count, lambda n, f=floor: n >= f, within=240)
        if _ < KILLS:
            for worker in random.sample(workers, len(workers)):
                worker.kill()
                worker.start()
                await asyncio.sleep(random.uniform(0.0, 0.3))
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
            await kill_twice_under(load, [decider], {200})
    finally:
        service.stop()
        decider.stop()

    statuses = {a.status for a in load.answers}
    assert statuses <= {200, 503}, statuses

    await assert_each_command_answered_one_way(
        own_stack.kafka_bootstrap, {owner}, f"property decider, {len(load.answers)} updates", load
    )
    await assert_each_event_is_one_decision(own_stack.kafka_bootstrap, PROPERTIES, {owner})


async def test_killed_user_deciders_answer_every_command_the_same_each_time_and_hold_each_email_once(
    own_stack, tmp_path
):
    env = own_stack.env()
    bootstrap = own_stack.kafka_bootstrap
    since = await end_offsets(bootstrap, COMMAND_OUTCOMES.name, COMMAND_OUTCOMES.partitions)
    users_since = await end_offsets(bootstrap, USERS.name, USERS.partitions)
    registry = WorkerProcess("streams.users.registry_app", env, tmp_path / "user-registry.log")
    account = WorkerProcess("streams.users.account_app", env, tmp_path / "user-account.log")
    service = ServiceProcess(by_name("user"), tmp_path / "user-service.log", {**env, **TEST_SERVICE_ENV})
    registry.start()
    account.start()
    await service.start(within=SERVICE_START)
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as api:

            async def register(email: str) -> httpx.Response:
                return await api.post("/api/auth/register", json=registration(email))

            async def fresh() -> httpx.Response | None:
                # A new address each try: a try answered 503 may still take its address later.
                try:
                    return await register(f"priya.kills.{uuid.uuid4().hex[:10]}@example.in")
                except httpx.TimeoutException:
                    return None

            users = {}  # user id -> email
            for _ in range(USERS_RENAMED):
                made = await eventually(fresh, lambda r: r is not None and r.status_code == 201, 240, 0.5)
                users[made.json()["data"]["id"]] = made.json()["data"]["email"]
            auth = {user: {"Authorization": f"Bearer {issue_access_token(user, 'USER')}"} for user in users}

            def command(n: int):
                if n % REGISTERING == 0:
                    # Half of them an address already taken (409), half a new one (201).
                    taken = n % (2 * REGISTERING) == 0
                    email = (
                        random.choice(list(users.values()))
                        if taken
                        else f"priya.kills.{n}.{uuid.uuid4().hex[:6]}@example.in"
                    )
                    return register(email)
                user = random.choice(list(users))
                return api.put(f"/api/users/{user}", json={"name": f"Priya {n}"}, headers=auth[user])

            load = CommandLoad(command, USER_RATE, 60)
            await kill_twice_under(load, [registry, account], {200, 201, 409})

            statuses = {a.status for a in load.answers}
            assert statuses <= {200, 201, 409, 503}, statuses

            # After the load one rename per user, awaited: every earlier command of the user (on its
            # partition, in order) has been decided once it is answered.
            for user in users:

                async def rename(u: str = user) -> int | None:
                    try:
                        answer = await api.put(f"/api/users/{u}", json={"name": "Priya Last"}, headers=auth[u])
                    except httpx.TimeoutException:
                        return None
                    return answer.status_code

                await eventually(rename, lambda status: status == 200, within=120, every=0.5)

            # The accounts table restored: per account, every accepted command answered with a version of
            # its own, 1 (the opening) up to the last, none twice; and the next update is taken at the
            # last. The emails table restored: every address taken before the kills is still taken.
            accepted = defaultdict(dict)
            for envelope in await read_all(bootstrap, COMMAND_OUTCOMES.name, COMMAND_OUTCOMES.partitions, since):
                data = envelope["data"]
                if data["verdict"] == "accepted" and data.get("aggregateId") in users:
                    accepted[data["aggregateId"]][data["commandId"]] = data["version"]
            for user in users:
                versions = sorted(accepted[user].values())
                assert versions == list(range(1, len(versions) + 1)), (user, versions)
                headers = {**auth[user], "If-Match": f'"{versions[-1]}"'}
                again = await api.put(f"/api/users/{user}", json={"name": "Priya Reddy"}, headers=headers)
                assert again.status_code == 200, again.text
                assert again.json()["data"]["version"] == versions[-1] + 1
            for email in users.values():
                assert (await register(email)).status_code == 409
    finally:
        service.stop()
        registry.stop()
        account.stop()

    await assert_each_command_answered_one_way(
        bootstrap, None, f"user registry and account decider, {len(load.answers)} commands", load, since
    )
    actors = set(users)
    await assert_each_event_is_one_decision(bootstrap, USERS, actors)
    # No email is held twice: each address was registered by one account, however often it was asked.
    holders = defaultdict(set)
    for event in await read_all(bootstrap, USERS.name, USERS.partitions, users_since):
        if event["type"] == USER_REGISTERED:
            holders[event["data"]["emailKey"]].add(event["subject"])
    registered = sum(1 for a in load.answers if a.status == 201)
    print(f"{registered} registrations answered 201, {len(holders)} addresses registered")
    assert len(holders) >= USERS_RENAMED + registered
    assert {key: ids for key, ids in holders.items() if len(ids) > 1} == {}
