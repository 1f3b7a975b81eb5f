"""Closing an account erases the person everywhere (crypto-shredding), against the real stack.

A user registers, logs in on two devices, changes name and phone, lists a property with a photo named
after them, searches for words of their own, saves searches under names of their own (one of them then alerts them
to a new listing: the matcher, the delivery reactor and the inbox name it) and writes another user a
message; every event is archived. Before the deletion the scanner finds them in Postgres and Redis
(so it can find things), and Kafka already holds nothing of them in the clear. After DELETE: login
fails, the profile is 404, the listing is delisted, the other device's token is refused, the user's key
is gone, and a Postgres dump, every Redis key, every OpenSearch document and every message of every
Kafka topic hold none of the email, phones, names, search words, saved-search names or the message's
words. The non-personal facts (the account's events, the listing's) remain.
"""

import asyncio
import uuid
from collections.abc import Awaitable

import httpx
import psycopg
import pytest

from api.services import by_name
from schemas.topics import PROPERTIES, SEARCHES, USERS
from tests.support.archive import archive_worker
from tests.support.erasure import kafka_everything, opensearch_everything, postgres_dump, redis_everything
from tests.support.files import png_image
from tests.support.notifications import bearer, running_notification_slice
from tests.support.processes import WorkerProcess
from tests.support.properties import SEED_BODY
from tests.support.property_projection import start_group_at_end
from tests.support.services import ServiceProcess
from tests.support.users import PASSWORD, registration, running_user_slice
from tests.support.waiting import eventually

CONSISTENCY = "X-Consistency-Token"


@pytest.fixture(scope="module")
async def users(stack, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("user-erasure")
    group = f"erasure-archive-{uuid.uuid4().hex[:8]}"
    archive = archive_worker(group, log_dir, HI_ARCHIVE_TOPICS="users,properties,files,searches,notifications")
    archive.start()
    try:
        async with running_user_slice(log_dir, stack.as_env()) as slice_:
            yield slice_
    finally:
        archive.stop()


@pytest.fixture(scope="module")
async def search(stack, settings, tmp_path_factory):
    """The search service, a search projection and a saved-search matcher of this module (their groups
    start at the end)."""
    log_dir = tmp_path_factory.mktemp("erasure-search")
    run = uuid.uuid4().hex[:8]
    group, matcher_group = f"erasure-search-projection-{run}", f"erasure-saved-search-matcher-{run}"
    await start_group_at_end(settings.kafka_bootstrap, group, (SEARCHES.name, USERS.name))
    await start_group_at_end(settings.kafka_bootstrap, matcher_group, (PROPERTIES.name,))
    workers = [
        WorkerProcess(
            "streams.searches.projection_worker", {"HI_SEARCH_PROJECTION_GROUP": group}, log_dir / "projection.log"
        ),
        WorkerProcess(
            "streams.searches.matcher_worker", {"HI_SAVED_SEARCH_MATCHER_GROUP": matcher_group}, log_dir / "matcher.log"
        ),
    ]
    service = ServiceProcess(by_name("search"), log_dir / "search-service.log", stack.as_env())
    for worker in workers:
        worker.start()
    try:
        await service.start()
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            yield client
    finally:
        service.stop()
        for worker in workers:
            worker.stop()


@pytest.fixture(scope="module")
async def notifications(users, stack, tmp_path_factory):
    """The notification service and workers beside the user slice (whose read model names recipients)."""
    log_dir = tmp_path_factory.mktemp("user-erasure-notifications")
    async with running_notification_slice(log_dir, stack.as_env(), with_users=False) as slice_:
        yield slice_


def a_person() -> dict[str, str]:
    """Values found nowhere else: a random marker in each, the phone's digits random too."""
    marker = "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])
    digits = str(uuid.uuid4().int)[:8]
    return {
        "email": f"erase.{marker}@example.in",
        "name": f"Zarine {marker.capitalize()}",
        "phone": f"+9197{digits}",
        "password": PASSWORD,
    }


async def archived(pg: psycopg.AsyncConnection, user_id: str, event_type: str) -> int:
    cursor = await pg.execute(
        "SELECT count(*) FROM event_store WHERE subject = %s AND event_type = %s", (user_id, event_type)
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def key_count(pg: psycopg.AsyncConnection, user_id: str) -> int:
    cursor = await pg.execute("SELECT count(*) FROM user_keys WHERE user_id = %s", (user_id,))
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


def personal_values(*people: dict[str, str]) -> set[bytes]:
    values: set[bytes] = set()
    for person in people:
        values |= {person["email"].encode(), person["name"].encode(), person["phone"].removeprefix("+").encode()}
    return values


def found_in(haystack: bytes, needles: set[bytes]) -> set[bytes]:
    lowered = haystack.lower()
    return {needle for needle in needles if needle.lower() in lowered}


async def holds(dump: Awaitable[bytes], needle: bytes) -> bool:
    return needle.lower() in (await dump).lower()


async def holds_none(dump: bytes, needles: set[bytes]) -> bool:
    return not found_in(dump, needles)


def their_words() -> dict[str, str]:
    """What a person types into search: words found nowhere else."""
    marker = a_person()["name"].split()[1].lower()
    return {
        "query": f"{marker} lakeview",
        "name": f"{marker.capitalize()} family flat hunt",
        "saved": f"{marker}ville",
        "alert": f"{marker.capitalize()} budget alert",
    }


async def test_a_closed_account_leaves_no_personal_data_anywhere(users, search, notifications, settings, pg):
    person, renamed, words = a_person(), a_person(), their_words()
    # What the person writes to someone else is theirs too: the subject and text of a message.
    message = {"subject": f"Visit {a_person()['name']}", "text": f"Call me about {a_person()['name']}"}
    search_api = search
    async with users.client() as api, users.properties.client() as property_api:
        made = await api.post("/api/auth/register", json={k: person[k] for k in ("email", "password", "name", "phone")})
        assert made.status_code == 201, made.text
        user_id = made.json()["data"]["id"]
        token = {CONSISTENCY: made.headers[CONSISTENCY]}
        sessions = []
        for device in ("10.9.0.1", "10.9.0.2"):
            logged = await api.post(
                "/api/auth/login",
                json={"email": person["email"], "password": PASSWORD},
                headers={**token, "X-Forwarded-For": device},
            )
            assert logged.status_code == 200, logged.text
            sessions.append({"Authorization": f"Bearer {logged.json()['data']['accessToken']}"})
        phone, other_phone = sessions
        changed = await api.put(
            f"/api/users/{user_id}", json={"name": renamed["name"], "phone": renamed["phone"]}, headers=phone
        )
        assert changed.status_code == 200, changed.text
        listing = await property_api.post(
            "/api/properties", json={**SEED_BODY, "title": f"Villa {person['name'].split()[1]}"}, headers=phone
        )
        assert listing.status_code == 201, listing.text
        # People name files after themselves: the photo's name travels sealed in `file.uploaded`.
        photo = (f"{renamed['name']} balcony.png", png_image(), "image/png")
        where = listing.headers["Location"]
        added = await property_api.post(
            f"{where}/images", files=[("images", photo)], headers={**phone, CONSISTENCY: listing.headers[CONSISTENCY]}
        )
        assert added.status_code in (200, 201), added.text
        # People search for, and name their saved searches with, words of their own.
        searched = await search_api.get("/api/search/properties", params={"q": words["query"]}, headers=phone)
        assert searched.status_code == 200, searched.text
        saved = await search_api.post(
            "/api/search/save", json={"name": words["name"], "criteria": {"q": words["saved"]}}, headers=phone
        )
        assert saved.status_code == 201, saved.text
        # A price no other listing of the run asks: the second saved search matches the listing made below.
        price = 9_000_000 + int(uuid.uuid4().int % 900_000)
        alerting = await search_api.post(
            "/api/search/save",
            json={"name": words["alert"], "criteria": {"price": {"min": price, "max": price}}},
            headers=phone,
        )
        assert alerting.status_code == 201, alerting.text
        mine = await search_api.get(
            f"/api/search/saved/{user_id}", headers={**phone, CONSISTENCY: alerting.headers[CONSISTENCY]}
        )
        names = {item["name"]: item["criteria"].get("q") for item in mine.json()["data"]["items"]}
        assert names == {words["name"]: words["saved"], words["alert"]: None}
        await an_alert_names_the_saved_search(notifications, property_api, user_id, phone, price, words["alert"])
        history = await search_api.get(
            f"/api/search/history/{user_id}", headers={**phone, CONSISTENCY: searched.headers[CONSISTENCY]}
        )
        assert [item["query"] for item in history.json()["data"]["items"]] == [words["query"]]
        await write_a_message(users, notifications, phone, message)
        typed = {value.encode() for value in (*words.values(), *message.values())}
        seen = await api.get(f"/api/users/{user_id}", headers={**phone, CONSISTENCY: changed.headers[CONSISTENCY]})
        assert seen.json()["data"]["name"] == renamed["name"]
        everyone = personal_values(person, renamed)  # the email never changes: renamed's is a control

        # The scanner finds what is there: the current profile in Postgres and Redis, the listing in OpenSearch.
        await eventually(lambda: holds(redis_everything(settings), person["email"].encode()), bool)
        assert found_in(postgres_dump(settings), everyone) == {
            person["email"].encode(),
            renamed["name"].encode(),
            renamed["phone"].removeprefix("+").encode(),
        }
        marker = person["name"].split()[1].encode()
        await eventually(lambda: holds(opensearch_everything(settings), marker), bool)
        assert found_in(postgres_dump(settings), typed) == typed
        # ...and Kafka, the record kept forever, never held them in the clear.
        assert found_in(await kafka_everything(settings), everyone | typed) == set()

        closed = await api.delete(f"/api/users/{user_id}", headers={**phone, CONSISTENCY: listing.headers[CONSISTENCY]})
        assert closed.status_code == 200, closed.text
        assert closed.json()["data"]["delistedProperties"] == 1
        after = {CONSISTENCY: closed.headers[CONSISTENCY]}
        assert (await api.get(f"/api/users/{user_id}", headers=after)).status_code == 404
        assert (await property_api.get(listing.headers["Location"], headers=after)).status_code == 404
        login = await api.post("/api/auth/login", json={"email": person["email"], "password": PASSWORD}, headers=after)
        assert login.status_code == 401
        assert (await api.get(f"/api/users/{user_id}/properties", headers=other_phone)).status_code == 401

    assert await key_count(pg, user_id) == 0
    await eventually(lambda: archived(pg, user_id, "user.deleted.v1"), lambda n: n == 1, within=60)
    # The facts stay: the account's registration and profile change are still in the record, sealed.
    assert await archived(pg, user_id, "user.registered.v1") == 1
    assert await archived(pg, user_id, "user.profile_updated.v1") == 1

    everything = everyone | typed
    # The search projection, and the notification projection (the recipient keeps a notice, not the words).
    await eventually(lambda: holds_none(postgres_dump(settings), typed), bool, within=60)
    assert found_in(postgres_dump(settings), everything) == set()
    assert found_in(await redis_everything(settings), everything) == set()
    assert found_in(await opensearch_everything(settings), everything) == set()
    assert found_in(await kafka_everything(settings), everything) == set()


async def an_alert_names_the_saved_search(
    notifications, property_api, user_id: str, session: dict[str, str], price: int, name: str
) -> None:
    """Someone else lists a home at `price`: the matcher alerts the saved search, and the inbox entry and
    the email made of that alert name it (opened with its owner's key)."""
    lister = bearer(f"user-lister-{uuid.uuid4().hex[:8]}")
    listed = await property_api.post("/api/properties", json={**SEED_BODY, "price": price}, headers=lister)
    assert listed.status_code == 201, listed.text
    property_id = listed.json()["data"]["id"]
    async with notifications.client() as notification_api:
        inbox = await eventually(
            lambda: notification_api.get(f"/api/notifications/{user_id}", headers=session),
            lambda r: property_id in r.text,
            within=90,
        )
    [entry] = [item for item in inbox.json()["data"]["items"] if property_id in str(item)]
    assert entry["title"] == f"New match for \u201c{name}\u201d"
    # ...and so does its email, which the delivery reactor rendered with the key.
    [email] = await eventually(lambda: asyncio.sleep(0, notifications.mail(entry["id"])), bool, within=60)
    assert email.message["Subject"] == f"New match for \u201c{name}\u201d: {SEED_BODY['title']}"


async def write_a_message(users, notifications, sender: dict[str, str], message: dict[str, str]) -> None:
    """`sender` (their session) writes a new user a message, and waits until it is in that user's inbox."""
    async with users.client() as api, notifications.client() as notification_api:
        made = await api.post("/api/auth/register", json=registration())
        assert made.status_code == 201, made.text
        recipient = made.json()["data"]["id"]
        await eventually(
            lambda: api.get(
                f"/api/users/{recipient}", headers={CONSISTENCY: made.headers[CONSISTENCY], **bearer(recipient)}
            ),
            lambda r: r.status_code == 200,
        )
        sent = await notification_api.post(
            "/api/notifications/email", json={"userId": recipient, **message}, headers=sender
        )
        assert sent.status_code == 202, sent.text
        notification = sent.json()["data"]["id"]
        inbox = await eventually(
            lambda: notification_api.get(f"/api/notifications/{recipient}", headers=bearer(recipient)),
            lambda r: notification in r.text,
            within=60,
        )
        [entry] = [item for item in inbox.json()["data"]["items"] if item["id"] == notification]
        assert (entry["title"], entry["body"]) == (message["subject"], message["text"])
