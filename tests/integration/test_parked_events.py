"""Dead letters keep order per property, against real Kafka, Postgres and Redis: once the property
projection dead-letters an event of a property, the property's later events are parked in Postgres while
other properties flow on; `python -m ops.dead_letters redrive` (the real command) has the worker apply
them in order once the cause is fixed, and a second redrive changes nothing."""

import asyncio
import sys
import uuid

import orjson
import psycopg
import pytest
import redis.asyncio as redis
from psycopg import sql

from config.settings import PROJECT_ROOT
from schemas.topics import PROPERTIES, PROPERTY_VIEWS
from tests.support.property_projection import (
    created,
    image,
    images_added,
    produce,
    projection_worker,
    start_group_at_end,
    updated,
)
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
async def group(settings, tmp_path_factory):
    """The projection worker under a fresh group of its own; its parked events are named after it."""
    group = f"property-projection-parking-it-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(settings.kafka_bootstrap, group, (PROPERTIES.name, PROPERTY_VIEWS.name))
    worker = projection_worker(group, tmp_path_factory.mktemp("logs"))
    # Its Postgres connections say who they are, so `only_the_worker_under_test` can tell them apart.
    worker.env["PGAPPNAME"] = group
    worker.start()
    yield group
    worker.stop()
    async with await psycopg.AsyncConnection.connect(settings.postgres_dsn, autocommit=True) as pg:
        await pg.execute("DELETE FROM parked_events WHERE consumer = %s", (group,))


async def trigger_on_properties(pg, name: str, body: sql.Composable) -> None:
    await pg.execute(
        sql.SQL("CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {} RETURN NEW; END $$").format(
            sql.Identifier(name), body
        )
    )
    await pg.execute(
        sql.SQL("CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON properties FOR EACH ROW EXECUTE FUNCTION {}()").format(
            sql.Identifier(name), sql.Identifier(name)
        )
    )


async def drop_trigger(pg, name: str) -> None:
    await pg.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON properties").format(sql.Identifier(name)))
    await pg.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
async def only_the_worker_under_test(settings, group, run_id):
    """Every property projection on the shared stack reads `properties` and writes the one `properties`
    table; the others do not park, and would apply the events this test expects parked. So the rows of
    this test's properties are written only by the worker under test: the others' writes of them are
    skipped (a BEFORE trigger answering NULL), as if they had nothing to do."""
    name = f"parking_it_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(settings.postgres_dsn, autocommit=True) as pg:
        prefix = sql.Literal(f"prop-{run_id}-")
        body = sql.SQL(
            "IF left(NEW.id, length({})) = {} AND current_setting('application_name') <> {} THEN RETURN NULL; END IF;"
        ).format(prefix, prefix, sql.Literal(group))
        await trigger_on_properties(pg, name, body)
        yield
        await drop_trigger(pg, name)
        # The other projections on the stack that park (a test slice's) parked this test's keys too.
        await pg.execute(
            "DELETE FROM parked_events WHERE left(key, %s) = %s", (len(f"prop-{run_id}-"), f"prop-{run_id}-")
        )


@pytest.fixture
async def refused_title(pg, run_id, only_the_worker_under_test):
    """A cause an operator can fix: Postgres refuses listings titled so (as a too narrow column or a
    constraint would) until the test drops the trigger again."""
    name, title = f"refuse_title_{uuid.uuid4().hex[:8]}", f"Refused listing {run_id}"
    body = sql.SQL("IF NEW.title = {} THEN RAISE EXCEPTION 'title % refused', NEW.title; END IF;").format(
        sql.Literal(title)
    )
    await trigger_on_properties(pg, name, body)
    yield title, lambda: drop_trigger(pg, name)
    await drop_trigger(pg, name)


@pytest.fixture
async def cache(settings):
    client = redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


async def at_version(pg, cache, property_id, version):
    """Awaited on the rows themselves: the checkpoints are shared by every property projection of the
    stack, and only the worker under test writes these rows."""
    await eventually(
        lambda: row_of(pg, property_id), until=lambda row: row is not None and row[4] == version, within=60
    )
    await eventually(
        lambda: cache.get(f"property:{property_id}"),
        until=lambda doc: doc is not None and orjson.loads(doc)["version"] == version,
    )


async def row_of(pg, property_id):
    cursor = await pg.execute(
        "SELECT title, price, images, deleted, version, updated_at FROM properties WHERE id = %s", (property_id,)
    )
    return await cursor.fetchone()


async def parked(pg, group, key):
    cursor = await pg.execute(
        'SELECT "offset", dead, reason FROM parked_events WHERE consumer = %s AND key = %s ORDER BY seq', (group, key)
    )
    return await cursor.fetchall()


async def dead_letters_tool(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops.dead_letters",
        *args,
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


def shown(document: bytes | None) -> dict:
    """The Redis document without what names the property or when its events were made."""
    found = orjson.loads(document or b"{}")
    return {k: v for k, v in found.items() if k not in ("id", "createdAt", "updatedAt")}


async def test_a_dead_lettered_event_parks_the_later_events_of_its_key_until_it_is_redriven(
    group, producer, pg, cache, refused_title, run_id
):
    title, fix = refused_title
    key, other, control, owner = f"prop-{run_id}-k", f"prop-{run_id}-j", f"prop-{run_id}-in-order", f"user-{run_id}-p"
    await produce(producer, created(key, owner, run_id), created(other, owner, run_id, n=1))
    await at_version(pg, cache, key, 1)

    later = [
        updated(key, owner, run_id, 2, title=title, price=6_100_000),
        updated(key, owner, run_id, 3, title=title, price=6_200_000),
        images_added(key, owner, run_id, 4, count=2),
    ]
    [poison_sent, *_] = await produce(producer, *later)
    await produce(producer, updated(other, owner, run_id, 2, price=7_000_000))

    # The other property is applied at once; this one stays at its creation, its later events parked.
    await at_version(pg, cache, other, 2)
    assert (await row_of(pg, other))[1:5] == (7_000_000, [], False, 2)
    waiting = await eventually(lambda: parked(pg, group, key), until=lambda rows: len(rows) == 3)
    assert (await row_of(pg, key))[4] == 1
    assert orjson.loads(await cache.get(f"property:{key}"))["version"] == 1
    assert [(offset, dead) for offset, dead, _ in waiting] == [
        (poison_sent.offset, True),
        (poison_sent.offset + 1, False),
        (poison_sent.offset + 2, False),
    ]
    assert f"title {title} refused" in waiting[0][2]
    assert waiting[1][2] == f"parked behind {PROPERTIES.name}[{poison_sent.partition}]@{poison_sent.offset}"
    code, out = await dead_letters_tool("list", "--consumer", group)
    assert code == 0 and key in out and other not in out

    # The cause is fixed; the redrive applies the three in order, as if nothing had happened.
    await fix()
    # Well within the worker's check interval (`REDRIVE_CHECK_SECONDS`): only the tool's notification wakes it.
    code, out = await dead_letters_tool("redrive", "--consumer", group, "--key", key, "--wait", "20")
    assert code == 0, out
    assert "3 applied" in out
    assert await parked(pg, group, key) == []
    await produce(producer, created(control, owner, run_id), *(rebuilt(e, control) for e in later))
    await at_version(pg, cache, control, 4)
    after = await row_of(pg, key)
    assert after[:5] == (title, 6_200_000, [image(0), image(1)], False, 4)
    assert after[:5] == (await row_of(pg, control))[:5]
    document = await cache.get(f"property:{key}")
    assert shown(document) == shown(await cache.get(f"property:{control}"))

    # A second redrive finds nothing and changes nothing.
    code, out = await dead_letters_tool("redrive", "--consumer", group, "--key", key)
    assert code == 0 and "nothing dead or parked" in out
    assert await row_of(pg, key) == after
    assert await cache.get(f"property:{key}") == document

    # The key flows again.
    await produce(producer, updated(key, owner, run_id, 5, price=6_300_000))
    await at_version(pg, cache, key, 5)
    assert (await row_of(pg, key))[1:5] == (6_300_000, [image(0), image(1)], False, 5)
    assert await parked(pg, group, key) == []


def rebuilt(event, subject):
    """The same event for another property: what an in-order application gives to compare with."""
    return event.model_copy(update={"subject": subject, "id": f"evt-{uuid.uuid4().hex}"})


async def test_skipping_an_unreadable_event_lets_the_parked_ones_flow(
    group, producer, pg, cache, only_the_worker_under_test, run_id
):
    key, owner = f"prop-{run_id}-skip", f"user-{run_id}-s"
    await produce(producer, created(key, owner, run_id))
    await at_version(pg, cache, key, 1)
    # Cut short, so no fix can make it readable; sent with the next two, likely in one batch with them.
    poison = producer.send(PROPERTIES.name, b'{"specversion": "1.0", "type": "property.updated.v1"', key=key.encode())
    poison_sent = await (await poison)
    await produce(
        producer, updated(key, owner, run_id, 3, price=8_000_000), updated(key, owner, run_id, 4, price=8_100_000)
    )
    waiting = await eventually(lambda: parked(pg, group, key), until=lambda rows: len(rows) == 3)
    assert [(offset, dead) for offset, dead, _ in waiting] == [
        (poison_sent.offset, True),
        (poison_sent.offset + 1, False),
        (poison_sent.offset + 2, False),
    ]
    assert "malformed JSON" in waiting[0][2]
    assert (await row_of(pg, key))[4] == 1

    # A redrive cannot help: it fails again and the key stays parked behind the same event.
    code, out = await dead_letters_tool("redrive", "--consumer", group, "--key", key, "--wait", "30")
    assert code == 1 and "3 still parked" in out, out
    assert [(offset, dead) for offset, dead, _ in await parked(pg, group, key)] == [
        (poison_sent.offset, True),
        (poison_sent.offset + 1, False),
        (poison_sent.offset + 2, False),
    ]
    # The operator gives up on that event; the ones after it are applied, in order.
    code, out = await dead_letters_tool("skip", "--consumer", group, "--key", key)
    assert code == 0, out
    assert f"skipped {PROPERTIES.name}[{poison_sent.partition}]@{poison_sent.offset}" in out
    assert await parked(pg, group, key) == []
    await at_version(pg, cache, key, 4)
    assert (await row_of(pg, key))[1:5] == (8_100_000, [], False, 4)
