"""SIGKILL a projection worker twice while its events arrive (each kind under a group of its own, started
by its module command line): its stores converge exactly to what one worker reading the same log makes
of it. A worker killed mid-batch has written some of the batch and committed none of its offsets; its
successor applies the batch again, which the version guards and checkpoints must absorb.

One test per kind, one shape: build a log for this run (`Kind.log`), send it in waves with a kill after
the second and the fourth, await every store's checkpoint past the last event, compare the stores with
the log's expected end state (`Kind.expect`, computed from the log alone)."""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import pytest
import redis.asyncio as redis

from config import Settings
from schemas.envelope import new_event
from schemas.personal import EMAIL, NAME, PASSWORD_HASH, PHONE, seal
from schemas.read_models import USERS_POSTGRES_CHECKPOINT, USERS_REDIS_CHECKPOINT, user_key
from schemas.topics import USERS
from schemas.users import USER_PROFILE_UPDATED, USER_REGISTERED
from tests.support.processes import Projection
from tests.support.projection_kills import Produced, run_killing

WAVES = 5
KILL_AFTER = {1, 3}


@dataclass(frozen=True)
class Kind:
    projection: Projection
    # The run's log (in waves) and what it must leave in the stores.
    log: Callable[[str, psycopg.AsyncConnection], Awaitable[list[list[Produced]]]]
    expect: Callable[[str, psycopg.AsyncConnection, Settings], Awaitable[None]]


def waves_of(events: Sequence[Produced], waves: int = WAVES) -> list[list[Produced]]:
    """In order, cut in `waves` parts: every event of a key stays behind its earlier ones."""
    size = -(-len(events) // waves)
    return [list(events[n * size : (n + 1) * size]) for n in range(waves)]


# ---- user-projection: `users` -> Postgres `users`, Redis `user:{id}` ----

USERS_COUNT = 200
RENAMES = 5


def _user_ids(tag: str) -> list[str]:
    return [f"user-{tag}-{n}" for n in range(USERS_COUNT)]


def _user_key(user_id: str) -> bytes:
    # Deterministic per user: the expectation seals nothing, it reads the plain values back.
    return (user_id.encode() * 32)[:32]


async def users_log(tag: str, pg: psycopg.AsyncConnection) -> list[list[Produced]]:
    """Each user registered, then renamed five times; the renames of all users interleaved."""
    ids = _user_ids(tag)
    for user_id in ids:
        await pg.execute("INSERT INTO user_keys (user_id, key) VALUES (%s, %s)", (user_id, _user_key(user_id)))

    def sealed(user_id: str, field: str, value: str) -> str:
        return seal(_user_key(user_id), user_id, field, value)

    events: list[Produced] = []
    for user_id in ids:
        data = {
            "email": sealed(user_id, EMAIL, f"{user_id}@example.in"),
            "name": sealed(user_id, NAME, "Priya"),
            "phone": sealed(user_id, PHONE, "+919876543210"),
            "passwordHash": sealed(user_id, PASSWORD_HASH, "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"),
            "role": "USER",
        }
        events.append((USERS.name, _user_event(USER_REGISTERED, user_id, data, tag, 1)))
    for rename in range(1, RENAMES + 1):
        for user_id in ids:
            data = {
                "name": sealed(user_id, NAME, f"Priya {rename}"),
                "phone": sealed(user_id, PHONE, f"+91987654{rename:04d}"),
                "changedFields": ["name", "phone"],
            }
            events.append((USERS.name, _user_event(USER_PROFILE_UPDATED, user_id, data, tag, 1 + rename)))
    return waves_of(events)


def _user_event(event_type: str, user_id: str, data: dict[str, Any], tag: str, version: int):
    return new_event(
        type=event_type,
        subject=user_id,
        data=data,
        service="tests",
        userid=user_id,
        correlationid=tag,
        sequence=version,
    )


async def users_expect(tag: str, pg: psycopg.AsyncConnection, settings: Settings) -> None:
    ids = _user_ids(tag)
    last = (1 + RENAMES, f"Priya {RENAMES}", f"+91987654{RENAMES:04d}", False)
    expected = {user_id: (f"{user_id}@example.in", *last) for user_id in ids}
    cursor = await pg.execute(
        "SELECT id, email_normalised, version, name, phone, deleted FROM users WHERE id = ANY(%s)", (ids,)
    )
    assert {row[0]: tuple(row[1:]) for row in await cursor.fetchall()} == expected
    cache = redis.from_url(settings.redis_url)
    try:
        documents = [orjson.loads(raw) for raw in await cache.mget([user_key(user_id) for user_id in ids])]
    finally:
        await cache.aclose()
    found = {d["id"]: (d["email"], d["version"], d["name"], d["phone"], d["deleted"]) for d in documents}
    assert found == expected


USER_PROJECTION = Kind(
    Projection(
        "user-projection",
        "streams.users.projection_worker",
        "HI_USER_PROJECTION_GROUP",
        (USERS.name,),
        {USERS.name: (USERS_POSTGRES_CHECKPOINT, USERS_REDIS_CHECKPOINT)},
    ),
    users_log,
    users_expect,
)


KINDS = {"user-projection": USER_PROJECTION}


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_projection_killed_twice_mid_load_converges_to_the_log(kind, settings, producer, pg, run_id, tmp_path):
    tag = f"{run_id}-{uuid.uuid4().hex[:6]}"
    chosen = KINDS[kind]
    waves = await chosen.log(tag, pg)
    run = await run_killing(settings.kafka_bootstrap, producer, pg, [chosen.projection], waves, KILL_AFTER, tmp_path)
    print(f"\n{kind}: {run.events} events, {run.kills} kills, converged {run.converged_seconds:.1f} s after the last")
    assert run.kills == len(KILL_AFTER)
    await chosen.expect(tag, pg, settings)
