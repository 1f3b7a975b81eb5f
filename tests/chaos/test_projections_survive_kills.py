"""SIGKILL a projection worker twice while its events arrive (each kind under a group of its own, started
by its module command line): its stores converge exactly to what one worker reading the same log makes
of it. A worker killed mid-batch has written some of the batch and committed none of its offsets; its
successor applies the batch again, which the version guards and checkpoints must absorb.

One test per kind, one shape: build a log for this run (`Kind.log`), send it in waves with a kill after
the second and the fourth, await every store's checkpoint past the last event, compare the stores with
the log's expected end state (`Kind.expect`, computed from the log alone)."""

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis.asyncio as redis
from psycopg import sql

from config import Settings, get_settings
from ops.search_index import ensure_index
from schemas.envelope import new_event
from schemas.files import FILE_DELETED, FILE_UPLOADED
from schemas.history import postgres_checkpoint, redis_checkpoint
from schemas.notifications import NOTIFICATION_READ, NOTIFICATION_REQUESTED, NOTIFICATION_SENT
from schemas.personal import EMAIL, NAME, PASSWORD_HASH, PHONE, SEARCH_NAME, seal
from schemas.read_models import (
    FILES_POSTGRES_CHECKPOINT,
    FILES_REDIS_CHECKPOINT,
    NOTIFICATIONS_POSTGRES_CHECKPOINT,
    NOTIFICATIONS_REDIS_CHECKPOINT,
    SEARCHES_POSTGRES_CHECKPOINT,
    USERS_POSTGRES_CHECKPOINT,
    USERS_REDIS_CHECKPOINT,
    property_files_key,
    saved_searches_checkpoint,
    unread_notifications_key,
    user_key,
)
from schemas.searches import SEARCH_SAVED, SEARCH_SAVED_MATCH
from schemas.topics import FILES, NOTIFICATIONS, PROPERTIES, SEARCHES, USERS
from schemas.users import USER_PROFILE_UPDATED, USER_REGISTERED
from streams.searches.matching import matches_checkpoint
from tests.support.history import HISTORY_TOPIC_NAMES, delete_groups, drop_namespace, history_env, live_schema
from tests.support.processes import Projection
from tests.support.projection_kills import Produced, run_killing
from tests.support.property_projection import created, updated
from tests.support.topic_log import end_offsets, read_all

WAVES = 5
KILL_AFTER = {1, 3}


@dataclass(frozen=True)
class Kind:
    projections: Callable[[str], list[Projection]]  # for the run's tag
    # The run's log (in waves) and what it must leave in the stores.
    log: Callable[[str, psycopg.AsyncConnection], Awaitable[list[list[Produced]]]]
    expect: Callable[[str, psycopg.AsyncConnection, Settings], Awaitable[None]]
    settle_after: frozenset[int] = frozenset()
    drop: Callable[[str], Awaitable[None]] | None = None  # what the run made beside rows (an index)


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
    lambda tag: [
        Projection(
            "user-projection",
            "streams.users.projection_worker",
            "HI_USER_PROJECTION_GROUP",
            (USERS.name,),
            {USERS.name: (USERS_POSTGRES_CHECKPOINT, USERS_REDIS_CHECKPOINT)},
        )
    ],
    users_log,
    users_expect,
)


# ---- file-projection: `files` -> Postgres `files`, Redis `files:property:{id}` ----

LISTINGS_WITH_FILES = 30
FILES_EACH = 8
DELETED_EACH = 2


def _file_ids(tag: str) -> dict[str, list[str]]:
    return {f"prop-{tag}-{n}": [f"file-{tag}-{n}-{m}" for m in range(FILES_EACH)] for n in range(LISTINGS_WITH_FILES)}


async def files_log(tag: str, pg: psycopg.AsyncConnection) -> list[list[Produced]]:
    """Eight photos uploaded to each of thirty listings (files are keyed by file id: a listing's files
    land on every partition), then two of each listing's deleted."""
    owner = f"user-{tag}-owner"
    uploads: list[Produced] = []
    deletes: list[Produced] = []
    for property_id, file_ids in _file_ids(tag).items():
        for m, file_id in enumerate(file_ids):
            data = {
                "fileId": file_id,
                "ownerId": owner,
                "propertyId": property_id,
                "kind": "photo",
                "contentType": "image/jpeg",
                "sizeBytes": 1000 + m,
                "sha256": f"{m:064x}",
                "filename": f"photo-{m}.jpg",
            }
            uploads.append((FILES.name, _file_event(FILE_UPLOADED, file_id, data, owner, tag)))
        for file_id in file_ids[:DELETED_EACH]:
            data = {"fileId": file_id, "ownerId": owner, "propertyId": property_id}
            deletes.append((FILES.name, _file_event(FILE_DELETED, file_id, data, owner, tag)))
    return waves_of(uploads + deletes)


def _file_event(event_type: str, file_id: str, data: dict[str, Any], owner: str, tag: str):
    return new_event(type=event_type, subject=file_id, data=data, service="tests", userid=owner, correlationid=tag)


async def files_expect(tag: str, pg: psycopg.AsyncConnection, settings: Settings) -> None:
    listings = _file_ids(tag)
    expected = {
        file_id: (property_id, m < DELETED_EACH)
        for property_id, file_ids in listings.items()
        for m, file_id in enumerate(file_ids)
    }
    cursor = await pg.execute("SELECT id, property_id, deleted FROM files WHERE id = ANY(%s)", (list(expected),))
    assert {row[0]: (row[1], row[2]) for row in await cursor.fetchall()} == expected
    cache = redis.from_url(settings.redis_url)
    try:
        documents = await cache.mget([property_files_key(property_id) for property_id in listings])
    finally:
        await cache.aclose()
    listed = {
        property_id: sorted(item["id"] for item in orjson.loads(raw)["items"])
        for property_id, raw in zip(listings, documents, strict=True)
    }
    assert listed == {property_id: sorted(file_ids[DELETED_EACH:]) for property_id, file_ids in listings.items()}


FILE_PROJECTION = Kind(
    lambda tag: [
        Projection(
            "file-projection",
            "streams.files.projection_worker",
            "HI_FILE_PROJECTION_GROUP",
            (FILES.name, USERS.name),
            {FILES.name: (FILES_POSTGRES_CHECKPOINT, FILES_REDIS_CHECKPOINT)},
        )
    ],
    files_log,
    files_expect,
)


# ---- notification-projection: `notifications` -> Postgres inbox and unread counts, Redis unread counts ----

RECIPIENTS = 20
NOTIFICATIONS_EACH = 10
READ_EACH = 4


def _inboxes(tag: str) -> dict[str, list[str]]:
    return {f"user-{tag}-{n}": [f"notif-{tag}-{n}-{m}" for m in range(NOTIFICATIONS_EACH)] for n in range(RECIPIENTS)}


async def notifications_log(tag: str, pg: psycopg.AsyncConnection) -> list[list[Produced]]:
    """Ten in-app welcomes for each of twenty users, requested then placed in the inbox; then four of each
    user's read. A user's notifications are keyed by their own ids: every partition holds some."""
    requested: list[Produced] = []
    sent: list[Produced] = []
    read: list[Produced] = []
    for user_id, notification_ids in _inboxes(tag).items():
        for m, notification_id in enumerate(notification_ids):
            request = {
                "notificationId": notification_id,
                "userId": user_id,
                "channel": "in_app",
                "kind": "account",
                "content": {"template": "welcome"},
            }
            requested.append((NOTIFICATIONS.name, _notification_event(NOTIFICATION_REQUESTED, request, tag)))
            placed = {"notificationId": notification_id, "userId": user_id, "channel": "in_app", "attempts": 1}
            sent.append((NOTIFICATIONS.name, _notification_event(NOTIFICATION_SENT, placed, tag)))
            if m < READ_EACH:
                seen = {"notificationId": notification_id, "userId": user_id}
                read.append((NOTIFICATIONS.name, _notification_event(NOTIFICATION_READ, seen, tag)))
    return waves_of(requested + sent + read)


def _notification_event(event_type: str, data: dict[str, Any], tag: str):
    return new_event(
        type=event_type,
        subject=data["notificationId"],
        data=data,
        service="tests",
        userid=data["userId"],
        correlationid=tag,
    )


async def notifications_expect(tag: str, pg: psycopg.AsyncConnection, settings: Settings) -> None:
    inboxes = _inboxes(tag)
    expected = {
        notification_id: (user_id, True, m < READ_EACH)
        for user_id, notification_ids in inboxes.items()
        for m, notification_id in enumerate(notification_ids)
    }
    cursor = await pg.execute(
        "SELECT id, user_id, in_app, read_at IS NOT NULL FROM notifications WHERE id = ANY(%s)", (list(expected),)
    )
    assert {row[0]: tuple(row[1:]) for row in await cursor.fetchall()} == expected
    unread = {user_id: NOTIFICATIONS_EACH - READ_EACH for user_id in inboxes}
    cursor = await pg.execute(
        "SELECT user_id, unread FROM notification_unread_counts WHERE user_id = ANY(%s)", (list(inboxes),)
    )
    assert dict(await cursor.fetchall()) == unread
    cache = redis.from_url(settings.redis_url)
    try:
        documents = await cache.mget([unread_notifications_key(user_id) for user_id in inboxes])
    finally:
        await cache.aclose()
    assert {user_id: orjson.loads(raw)["unread"] for user_id, raw in zip(inboxes, documents, strict=True)} == unread


NOTIFICATION_PROJECTION = Kind(
    lambda tag: [
        Projection(
            "notification-projection",
            "streams.notifications.projection_worker",
            "HI_NOTIFICATION_PROJECTION_GROUP",
            (NOTIFICATIONS.name, USERS.name),
            {NOTIFICATIONS.name: (NOTIFICATIONS_POSTGRES_CHECKPOINT, NOTIFICATIONS_REDIS_CHECKPOINT)},
        )
    ],
    notifications_log,
    notifications_expect,
)


# ---- saved-search-matcher (with the search projection feeding its percolator) ----

SEARCHERS = 10
SEARCHES_EACH = 2
LISTINGS_MATCHED = 90


def _saved_searches(tag: str) -> dict[str, str]:
    """Saved search id -> owner."""
    return {f"ss-{tag}-{n}-{m}": f"user-{tag}-s{n}" for n in range(SEARCHERS) for m in range(SEARCHES_EACH)}


def _alias(tag: str) -> str:
    return f"saved-searches-test-{tag}"


def _matcher_group(tag: str) -> str:
    return f"saved-search-matcher-chaos-{tag}"


def _search_projections(tag: str) -> list[Projection]:
    alias = {"HI_OPENSEARCH_SAVED_SEARCHES_ALIAS": _alias(tag)}
    return [
        Projection(
            "search-projection",
            "streams.searches.projection_worker",
            "HI_SEARCH_PROJECTION_GROUP",
            (SEARCHES.name, USERS.name),
            {SEARCHES.name: (SEARCHES_POSTGRES_CHECKPOINT, saved_searches_checkpoint(_alias(tag)))},
            env=alias,
        ),
        Projection(
            "saved-search-matcher",
            "streams.searches.matcher_worker",
            "HI_SAVED_SEARCH_MATCHER_GROUP",
            (PROPERTIES.name,),
            {PROPERTIES.name: (matches_checkpoint(_matcher_group(tag)),)},
            env=alias,
            group=_matcher_group(tag),
        ),
    ]


# Where `searches` ended before the run's log: its alerts are read from there.
_SEARCHES_SINCE: dict[str, dict[int, int]] = {}


def _bedrooms_wanted(saved_search_id: str) -> int:
    return 2 + int(saved_search_id.rsplit("-", 1)[1]) % 3  # listing(n) has 2 + n % 3 bedrooms


async def matcher_log(tag: str, pg: psycopg.AsyncConnection) -> list[list[Produced]]:
    """Twenty saved searches (two per owner, by bedrooms: 2 or 3) registered first (the first wave, awaited),
    then 90 listings created and each updated once: every listing matches the searches of its bedrooms, and
    an update is no new alert."""
    ensure_index("saved-searches", _alias(tag))
    _SEARCHES_SINCE[tag] = await end_offsets(get_settings().kafka_bootstrap, SEARCHES.name, SEARCHES.partitions)
    searches = _saved_searches(tag)
    for owner in set(searches.values()):
        await pg.execute("INSERT INTO user_keys (user_id, key) VALUES (%s, %s)", (owner, _user_key(owner)))
    saved: list[Produced] = []
    for saved_search_id, owner in searches.items():
        wanted = _bedrooms_wanted(saved_search_id)
        data = {
            "savedSearchId": saved_search_id,
            "ownerId": owner,
            "name": seal(_user_key(owner), owner, SEARCH_NAME, f"{wanted} bedrooms"),
            "criteria": {"bedrooms": {"min": wanted, "max": wanted}},
        }
        event = new_event(
            type=SEARCH_SAVED, subject=saved_search_id, data=data, service="tests", userid=owner, correlationid=tag
        )
        saved.append((SEARCHES.name, event))
    owner = f"user-{tag}-lister"
    listings = [f"prop-{tag}-{n}" for n in range(LISTINGS_MATCHED)]
    events: list[Produced] = [(PROPERTIES.name, created(pid, owner, tag, n=n)) for n, pid in enumerate(listings)]
    events += [
        (PROPERTIES.name, updated(pid, owner, tag, 2, price=7_000_000 + n, bedrooms=2 + n % 3))
        for n, pid in enumerate(listings)
    ]
    return [saved, *waves_of(events, WAVES - 1)]


async def matcher_expect(tag: str, pg: psycopg.AsyncConnection, settings: Settings) -> None:
    searches = _saved_searches(tag)
    expected = {
        (saved_search_id, f"prop-{tag}-{n}")
        for saved_search_id in searches
        for n in range(LISTINGS_MATCHED)
        if 2 + n % 3 == _bedrooms_wanted(saved_search_id)
    }
    # The search projection: every saved search in Postgres and in the percolator alias.
    cursor = await pg.execute("SELECT id, owner_id FROM saved_searches WHERE id = ANY(%s)", (list(searches),))
    assert dict(await cursor.fetchall()) == searches
    async with httpx.AsyncClient(base_url=settings.opensearch_url, timeout=30) as search:
        await search.post(f"/{_alias(tag)}/_refresh")
        counted = (await search.post(f"/{_alias(tag)}/_count", json={"query": {"match_all": {}}})).json()
    assert counted["count"] == len(searches)
    # The matcher: each matching pair remembered once.
    cursor = await pg.execute(
        "SELECT saved_search_id, property_id, property_version FROM saved_search_matches"
        " WHERE saved_search_id = ANY(%s)",
        (list(searches),),
    )
    # The searches match listings of other tests on the shared topic too: only this run's are counted.
    rows = [row for row in await cursor.fetchall() if row[1].startswith(f"prop-{tag}-")]
    assert {(row[0], row[1]) for row in rows} == expected
    # The version that first matched: 1, or 2 where a listing's creation and update came in one batch
    # (the matcher percolates the newest of each listing in a batch).
    assert {row[2] for row in rows} <= {1, 2}
    # And one alert per pair on `searches`: copies of it (a kill after Kafka took it, before the pair's
    # row committed) are the same event, byte for byte.
    alerts: dict[tuple[str, str], set[bytes]] = {}
    copies = 0
    for event in await read_all(settings.kafka_bootstrap, SEARCHES.name, SEARCHES.partitions, _SEARCHES_SINCE[tag]):
        data = event["data"]
        mine = data.get("savedSearchId") in searches and data.get("propertyId", "").startswith(f"prop-{tag}-")
        if event["type"] == SEARCH_SAVED_MATCH and mine:
            pair = (data["savedSearchId"], data["propertyId"])
            alerts.setdefault(pair, set()).add(orjson.dumps(event, option=orjson.OPT_SORT_KEYS))
            copies += 1
    print(f"\n{len(expected)} pairs, {copies} alert records on `{SEARCHES.name}`")
    assert set(alerts) == expected
    assert {pair: len(versions) for pair, versions in alerts.items() if len(versions) > 1} == {}


async def drop_alias(tag: str) -> None:
    async with httpx.AsyncClient(base_url=get_settings().opensearch_url, timeout=30) as search:
        await search.delete(f"/{_alias(tag)}-v*")


SAVED_SEARCH_MATCHER = Kind(
    _search_projections, matcher_log, matcher_expect, settle_after=frozenset({0}), drop=drop_alias
)


# ---- user-history: every user's activity (here: listings created and updated) in a namespace of its own ----

HISTORY_OWNERS = 20
HISTORY_LISTINGS_EACH = 10


def _namespace(tag: str) -> str:
    return "k" + hashlib.sha256(tag.encode()).hexdigest()[:12]


def _history_projections(tag: str) -> list[Projection]:
    namespace = _namespace(tag)
    env = history_env(namespace)
    # A fresh namespace's first generation is number 1: its checkpoints.
    stores = (postgres_checkpoint(namespace, 1), redis_checkpoint(namespace, 1))
    return [
        Projection(
            "user-history",
            "streams.history.projection_worker",
            "HI_HISTORY_GROUP",
            HISTORY_TOPIC_NAMES,
            {PROPERTIES.name: stores},
            env=env,
            group=env["HI_HISTORY_GROUP"],
        )
    ]


def _history_listings(tag: str) -> dict[str, str]:
    """Listing id -> owner."""
    return {
        f"prop-{tag}-{n}-{m}": f"user-{tag}-h{n}" for n in range(HISTORY_OWNERS) for m in range(HISTORY_LISTINGS_EACH)
    }


_HISTORY_LOGS: dict[str, list[Produced]] = {}


async def history_log(tag: str, pg: psycopg.AsyncConnection) -> list[list[Produced]]:
    """Ten listings for each of twenty owners, each created then updated by its owner: 400 activities."""
    listings = _history_listings(tag)
    events: list[Produced] = [
        (PROPERTIES.name, created(pid, owner, tag, n=n)) for n, (pid, owner) in enumerate(listings.items())
    ]
    events += [(PROPERTIES.name, updated(pid, owner, tag, 2, price=8_000_000)) for pid, owner in listings.items()]
    _HISTORY_LOGS[tag] = events
    return waves_of(events)


async def history_expect(tag: str, pg: psycopg.AsyncConnection, settings: Settings) -> None:
    listings = _history_listings(tag)
    expected = {event.id: (event.userid, event.type, event.subject) for _, event in _HISTORY_LOGS.pop(tag)}
    schema = await live_schema(pg, _namespace(tag))
    cursor = await pg.execute(
        sql.SQL("SELECT event_id, user_id, event_type, property_id FROM {} WHERE user_id = ANY(%s)").format(
            sql.Identifier(schema, "activities")
        ),
        (sorted(set(listings.values())),),
    )
    assert {row[0]: tuple(row[1:]) for row in await cursor.fetchall()} == expected
    cursor = await pg.execute(
        sql.SQL("SELECT property_id, owner_id FROM {} WHERE property_id = ANY(%s)").format(
            sql.Identifier(schema, "property_owners")
        ),
        (list(listings),),
    )
    assert dict(await cursor.fetchall()) == listings


async def drop_history(tag: str) -> None:
    settings = get_settings()
    await drop_namespace(settings, _namespace(tag))
    await delete_groups(settings.kafka_bootstrap, [history_env(_namespace(tag))["HI_HISTORY_GROUP"]])


USER_HISTORY = Kind(_history_projections, history_log, history_expect, drop=drop_history)


KINDS = {
    "saved-search-matcher": SAVED_SEARCH_MATCHER,
    "user-history": USER_HISTORY,
    "user-projection": USER_PROJECTION,
    "file-projection": FILE_PROJECTION,
    "notification-projection": NOTIFICATION_PROJECTION,
}


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_projection_killed_twice_mid_load_converges_to_the_log(kind, settings, producer, pg, run_id, tmp_path):
    tag = f"{run_id}-{uuid.uuid4().hex[:6]}"
    chosen = KINDS[kind]
    try:
        waves = await chosen.log(tag, pg)
        projections = chosen.projections(tag)
        run = await run_killing(
            settings.kafka_bootstrap,
            producer,
            pg,
            projections,
            waves,
            KILL_AFTER,
            tmp_path,
            settle_after=chosen.settle_after,
        )
        print(
            f"\n{kind}: {run.events} events, {run.kills} kills, converged {run.converged_seconds:.1f} s after the last"
        )
        assert run.kills == len(KILL_AFTER)
        await chosen.expect(tag, pg, settings)
    finally:
        if chosen.drop is not None:
            await chosen.drop(tag)
