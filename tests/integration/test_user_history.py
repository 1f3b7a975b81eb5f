"""User history against the real stack: a user's story told through the user and property services shows
up in every history endpoint with read-your-writes; the raw events are the event store's; days split at
midnight in Asia/Kolkata; a blue/green rebuild run while a client keeps querying changes nothing anyone
can see (no failed or empty answer, the same results and rows after the swap); one user's rebuild and a
point-in-time copy; and Kafka's own consumer-groups reset converges to the same tables.

Tests run in this order on purpose: the rebuilds come after the reads, and the reset comes last."""

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from psycopg import sql
from redis.asyncio import Redis

from api.common.auth import issue_access_token
from config.settings import PROJECT_ROOT
from schemas.codec import encode
from schemas.envelope import format_time, new_event
from tests.support.history import live_schema, running_history_slice, user_rows, wait_for_job
from tests.support.notifications import SUITE_TOKEN_TTL_SECONDS
from tests.support.properties import SEED_BODY
from tests.support.users import PASSWORD, registration, running_user_slice
from tests.support.waiting import eventually

CONSISTENCY = "X-Consistency-Token"
STORY = [
    "property.deleted",
    "property.viewed",
    "property.updated",
    "property.created",
    "search.performed",
    "user.profile_updated",
    "user.logged_in",
    "user.registered",
]


def bearer(user_id: str, role: str = "USER", ttl: int | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(user_id, role, ttl=ttl)}"}


ADMIN = bearer("user-history-test-admin", "ADMIN", ttl=SUITE_TOKEN_TTL_SECONDS)


@pytest.fixture(scope="module")
async def users(stack, tmp_path_factory):
    async with running_user_slice(tmp_path_factory.mktemp("user-slice"), stack.as_env()) as slice_:
        yield slice_


@pytest.fixture(scope="module")
async def history(stack, settings, tmp_path_factory):
    async with running_history_slice(tmp_path_factory.mktemp("history"), stack.as_env(), settings) as slice_:
        yield slice_


@pytest.fixture(scope="module")
async def api(history):
    async with history.client() as client:
        yield client


@dataclass
class Story:
    user_id: str
    auth: dict[str, str]
    email: str
    property_id: str
    token: str
    started: datetime
    listed_at: datetime  # between the listing and its first update


def merge(*tokens: str) -> str:
    return ",".join(t for t in tokens if t)


@pytest.fixture(scope="module")
async def story(users, history, producer, api) -> Story:
    """Register, log in, update the profile, search, list a property, update it, view it (and an anonymous
    visitor too), delist it: through the real services, as a client would."""
    started = datetime.now(UTC) - timedelta(seconds=1)
    async with users.client() as user_api, users.properties.client() as property_api:
        body = registration()
        made = await user_api.post("/api/auth/register", json=body)
        assert made.status_code == 201, made.text
        logged = await user_api.post(
            "/api/auth/login",
            json={"email": body["email"], "password": PASSWORD},
            headers={"X-Forwarded-For": f"10.9.{uuid.uuid4().int % 250}.1", CONSISTENCY: made.headers[CONSISTENCY]},
        )
        assert logged.status_code == 200, logged.text
        user_id = logged.json()["data"]["userId"]
        auth = {"Authorization": f"Bearer {logged.json()['data']['accessToken']}"}
        assert logged.headers[CONSISTENCY].startswith("users:"), "the login fact's position"
        profile = await user_api.put(f"/api/users/{user_id}", json={"name": "Priya R"}, headers=auth)
        assert profile.status_code == 200, profile.text
        search = new_event(
            type="search.performed.v1",
            subject=user_id,
            data={"userId": user_id, "query": "3BHK Gachibowli", "filters": {"bedrooms": 3}, "resultCount": 12},
            service="search",
            userid=user_id,
        )
        searched = await (await producer.send("searches", encode(search), key=user_id.encode()))
        created = await property_api.post("/api/properties", json=SEED_BODY, headers=auth)
        assert created.status_code == 201, created.text
        property_id = created.json()["data"]["id"]
        await asyncio.sleep(1.1)
        listed_at = datetime.now(UTC)
        await asyncio.sleep(1.1)
        updated = await property_api.put(f"/api/properties/{property_id}", json={"price": 9800000}, headers=auth)
        assert updated.status_code == 200, updated.text
        token = merge(created.headers[CONSISTENCY], updated.headers[CONSISTENCY])
        viewed = await property_api.post(f"/api/properties/{property_id}/view", headers={**auth, CONSISTENCY: token})
        anonymous = await property_api.post(f"/api/properties/{property_id}/view", headers={CONSISTENCY: token})
        assert viewed.status_code == anonymous.status_code == 202
        delisted = await property_api.delete(f"/api/properties/{property_id}", headers=auth)
        assert delisted.status_code == 200, delisted.text
    token = merge(
        made.headers[CONSISTENCY],
        logged.headers[CONSISTENCY],
        profile.headers[CONSISTENCY],
        f"{searched.topic}:{searched.partition}:{searched.offset}",
        token,
        viewed.headers[CONSISTENCY],
        anonymous.headers[CONSISTENCY],
        delisted.headers[CONSISTENCY],
    )
    return Story(user_id, auth, body["email"], property_id, token, started, listed_at)


async def read(api: httpx.AsyncClient, story: Story, path: str = "", **params: Any) -> httpx.Response:
    answer = await api.get(
        f"/api/user-history/{story.user_id}{path}", params=params, headers={**story.auth, CONSISTENCY: story.token}
    )
    assert answer.status_code == 200, answer.text
    assert "X-Consistency" not in answer.headers, "the store did not catch up within the wait"
    return answer


# ---- the story, read back ----


async def test_every_action_is_in_the_history_at_once_newest_first(api, story):
    items = (await read(api, story, limit=100)).json()["data"]["items"]
    assert [item["type"] for item in items] == STORY
    created = items[STORY.index("property.created")]
    assert created["propertyId"] == story.property_id and created["category"] == "property"
    assert created["details"]["title"] == SEED_BODY["title"] and created["eventType"] == "property.created.v1"
    assert items[STORY.index("property.updated")]["details"]["changedFields"] == ["price"]
    times = [item["occurredAt"] for item in items]
    assert times == sorted(times, reverse=True) and all(t.endswith("Z") for t in times)


async def test_no_email_phone_or_name_is_in_the_history(api, story):
    text = (await read(api, story, limit=100)).text + (await read(api, story, "/recent", limit=50)).text
    for personal in (story.email, "Priya", "+919876543210", "9876543210"):
        assert personal not in text


async def test_recent_from_redis_is_the_same_as_the_newest_of_the_history(api, story):
    recent = (await read(api, story, "/recent", limit=5)).json()["data"]["items"]
    newest = (await read(api, story, limit=5)).json()["data"]["items"]
    assert recent == newest and len(recent) == 5


async def test_a_signed_in_client_reads_its_own_story_without_any_token(users, api):
    """A client that never copies a token: each history read right after a step already shows it (the user
    and property services remembered where the session's events landed; this service waits for them)."""
    async with users.client() as user_api, users.properties.client() as property_api:
        body, address = registration(), {"X-Forwarded-For": f"10.8.{uuid.uuid4().int % 250}.1"}
        assert (await user_api.post("/api/auth/register", json=body, headers=address)).status_code == 201
        login = {"email": body["email"], "password": PASSWORD}
        logged = await user_api.post("/api/auth/login", json=login, headers=address)
        assert logged.status_code == 200, logged.text
        user_id = logged.json()["data"]["userId"]
        auth = {"Authorization": f"Bearer {logged.json()['data']['accessToken']}"}

        async def newest() -> str | None:
            answer = await api.get(f"/api/user-history/{user_id}", params={"limit": 1}, headers=auth)
            assert answer.status_code == 200 and "X-Consistency" not in answer.headers, answer.text
            items = answer.json()["data"]["items"]
            return items[0]["type"] if items else None

        assert await newest() == "user.logged_in"
        created = await property_api.post("/api/properties", json=SEED_BODY, headers=auth)
        assert created.status_code == 201, created.text
        assert await newest() == "property.created"
        updated = await property_api.put(created.headers["Location"], json={"price": 9_800_000}, headers=auth)
        assert updated.status_code == 200, updated.text
        assert await newest() == "property.updated"


async def test_property_and_search_activity(api, story):
    properties = (await read(api, story, "/properties")).json()["data"]["items"]
    assert [item["type"] for item in properties] == [t for t in STORY if t.startswith("property.")]
    assert {item["propertyId"] for item in properties} == {story.property_id}
    searches = (await read(api, story, "/searches")).json()["data"]["items"]
    assert [(s["type"], s["details"]["query"], s["details"]["resultCount"]) for s in searches] == [
        ("search.performed", "3BHK Gachibowli", 12)
    ]
    only_views = (await read(api, story, "/properties", type="property.viewed.v1")).json()["data"]["items"]
    assert [item["type"] for item in only_views] == ["property.viewed"]


async def test_pages_cover_the_history_once(api, story):
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        data = (await read(api, story, **params)).json()["data"]
        seen += [item["id"] for item in data["items"]]
        cursor = data["nextCursor"]
        if cursor is None:
            break
    everything = [item["id"] for item in (await read(api, story, limit=100)).json()["data"]["items"]]
    assert seen == everything and len(seen) == len(STORY)


async def test_time_filters(api, story):
    later = (await read(api, story, **{"from": format_time(story.listed_at)})).json()["data"]["items"]
    earlier = (await read(api, story, to=format_time(story.listed_at))).json()["data"]["items"]
    assert [i["type"] for i in later] + [i["type"] for i in earlier] == STORY
    assert earlier[0]["type"] == "property.created"


async def test_timeline_and_stats(api, story):
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Kolkata")).date().isoformat()
    days = (await read(api, story, "/timeline")).json()["data"]
    assert days["timeZone"] == "Asia/Kolkata"
    # The story takes seconds; should it straddle midnight in Kolkata, two days share it.
    assert sum(day["count"] for day in days["items"]) == len(STORY)
    assert days["items"][0]["date"] <= today
    assert [a["type"] for day in days["items"] for a in day["activities"]] == STORY
    stats = (await read(api, story, "/stats")).json()["data"]
    assert stats["byType"] == {t: 1 for t in STORY}
    assert stats["totalActivities"] == len(STORY)
    assert stats["byCategory"] == {"account": 3, "property": 4, "search": 1}
    assert (stats["listingsCreated"], stats["viewsReceived"], stats["searches"]) == (1, 2, 1)
    assert stats["activeDaysLast30"] in (1, 2) and stats["accountClosed"] is False
    newest = (await read(api, story, limit=1)).json()["data"]["items"][0]
    assert stats["lastActiveAt"] == newest["occurredAt"]


async def test_raw_events_are_the_event_store_rows(api, story, pg):
    answer = await api.get(
        f"/api/user-history/{story.user_id}/events",
        params={"limit": 100},
        headers={**story.auth, CONSISTENCY: story.token},
    )
    assert answer.status_code == 200 and "X-Consistency" not in answer.headers, answer.text
    events = answer.json()["data"]["items"]
    cursor = await pg.execute(
        "SELECT event_id, event_type, source, subject, occurred_at, user_id, session_id, correlation_id,"
        " causation_id, sequence, data FROM event_store WHERE user_id = %s OR subject = %s"
        " ORDER BY occurred_at DESC, event_id DESC",
        (story.user_id, story.user_id),
    )
    rows = await cursor.fetchall()
    assert len(events) == len(rows) >= len(STORY)
    for event, row in zip(events, rows, strict=True):
        event_id, event_type, source, subject, at, user, session, correlation, causation, sequence, data = row
        assert (event["id"], event["type"], event["source"], event["subject"]) == (
            event_id,
            event_type,
            source,
            subject,
        )
        assert event["time"] == format_time(at) and event["data"] == data
        assert (event.get("userid"), event.get("sessionid"), event.get("correlationid")) == (user, session, correlation)
        assert (event.get("causationid"), event.get("sequence")) == (causation, sequence)
        assert event["specversion"] == "1.0"
    assert {"user.registered.v1", "user.logged_in.v1", "property.created.v1"} <= {e["type"] for e in events}
    assert story.email not in answer.text  # sealed in `users` events
    only = await api.get(
        f"/api/user-history/{story.user_id}/events", params={"type": "property.created"}, headers=story.auth
    )
    assert [e["type"] for e in only.json()["data"]["items"]] == ["property.created.v1"]


async def test_another_user_gets_403_an_admin_may_read_and_no_token_is_401(api, story):
    other = await api.get(f"/api/user-history/{story.user_id}", headers=bearer("user-someone-else"))
    assert other.status_code == 403 and other.json()["success"] is False
    for path in ("/recent", "/properties", "/searches", "/events", "/timeline", "/stats"):
        assert (await api.get(f"/api/user-history/{story.user_id}{path}", headers=bearer("user-x"))).status_code == 403
    admin = await api.get(f"/api/user-history/{story.user_id}", headers={**ADMIN, CONSISTENCY: story.token})
    assert admin.status_code == 200 and len(admin.json()["data"]["items"]) == len(STORY)
    assert (await api.get(f"/api/user-history/{story.user_id}")).status_code == 401
    replay = await api.post("/api/user-history/replay", json={}, headers=story.auth)
    assert replay.status_code == 403


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/timeline", {"tz": "Mars/Olympus"}, 422, "tz"),
        ("", {"type": "property.exploded"}, 422, "type"),
        ("/searches", {"type": "property.created"}, 422, "type"),
        ("", {"from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, 422, "to"),
        ("", {"from": "yesterday"}, 422, "from"),
        ("", {"cursor": "bm90LWEtY3Vyc29y"}, 400, "cursor"),
        ("/recent", {"limit": 51}, 422, "limit"),
        ("/stats", {"snapshot": "job-doesnotexist"}, 404, "snapshot"),
    ],
)
async def test_bad_input_is_a_clear_error_naming_the_field(api, story, path, params, status, field):
    answer = await api.get(f"/api/user-history/{story.user_id}{path}", params=params, headers=story.auth)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is False and field in [e["field"] for e in body["errors"]]


async def test_replay_requests_are_validated(api):
    future = format_time(datetime.now(UTC) + timedelta(days=1))
    for body, field in (
        ({"from": "yesterday"}, "from"),
        ({"until": future}, "until"),
        ({"userId": "prop-1"}, "userId"),
        ({"from": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "until"),
    ):
        answer = await api.post("/api/user-history/replay", json=body, headers=ADMIN)
        assert answer.status_code == 422, answer.text
        assert field in [e["field"] for e in answer.json()["errors"]]
    assert (await api.get("/api/user-history/replay/job-nosuchjob", headers=ADMIN)).status_code == 404


async def test_days_split_at_midnight_in_kolkata(api, history, producer):
    user_id = f"user-tz{uuid.uuid4().hex[:12]}"
    sent = []
    for moment in ("2024-03-14T18:29:59.999+00:00", "2024-03-14T18:30:00.000+00:00"):
        login = new_event(
            type="user.logged_in.v1",
            subject=user_id,
            data={"method": "password"},
            service="user",
            userid=user_id,
            time=datetime.fromisoformat(moment),
        )
        sent.append(await (await producer.send("users", encode(login), key=user_id.encode())))
    headers = {**bearer(user_id), CONSISTENCY: merge(*(f"{m.topic}:{m.partition}:{m.offset}" for m in sent))}
    kolkata = await api.get(f"/api/user-history/{user_id}/timeline", headers=headers)
    assert kolkata.status_code == 200 and "X-Consistency" not in kolkata.headers, kolkata.text
    days = [(d["date"], d["count"]) for d in kolkata.json()["data"]["items"]]
    assert days == [("2024-03-15", 1), ("2024-03-14", 1)]
    utc = await api.get(f"/api/user-history/{user_id}/timeline", params={"tz": "UTC"}, headers=headers)
    assert [(d["date"], d["count"]) for d in utc.json()["data"]["items"]] == [("2024-03-14", 2)]
    paged = await api.get(f"/api/user-history/{user_id}/timeline", params={"limit": 1}, headers=headers)
    assert [d["date"] for d in paged.json()["data"]["items"]] == ["2024-03-15"]
    cursor = paged.json()["data"]["nextCursor"]
    second = await api.get(
        f"/api/user-history/{user_id}/timeline", params={"limit": 1, "cursor": cursor}, headers=headers
    )
    assert [d["date"] for d in second.json()["data"]["items"]] == ["2024-03-14"]
    assert second.json()["data"]["nextCursor"] is None


async def test_a_closed_account_leaves_no_history_but_its_views_still_count(
    api, users, history, producer, pg, settings
):
    """Decided and documented (streams/history/sinks.py): a closed account's activities are deleted, its
    views of listings stay as anonymous views (part of the owners' views received), and its events read
    after the closing (here a search on another topic, produced later) are not written back."""
    owner = f"user-owner{uuid.uuid4().hex[:12]}"
    async with users.client() as user_api, users.properties.client() as property_api:
        listed = await property_api.post("/api/properties", json=SEED_BODY, headers=bearer(owner))
        assert listed.status_code == 201, listed.text
        body = registration()
        made = await user_api.post("/api/auth/register", json=body)
        logged = await user_api.post(
            "/api/auth/login",
            json={"email": body["email"], "password": PASSWORD},
            headers={"X-Forwarded-For": f"10.8.{uuid.uuid4().int % 250}.1", CONSISTENCY: made.headers[CONSISTENCY]},
        )
        user_id = logged.json()["data"]["userId"]
        auth = {"Authorization": f"Bearer {logged.json()['data']['accessToken']}"}
        viewed = await property_api.post(
            f"/api/properties/{listed.json()['data']['id']}/view",
            headers={**auth, CONSISTENCY: listed.headers[CONSISTENCY]},
        )
        assert viewed.status_code == 202, viewed.text
        # Its history exists before the closing, read at once with the login's and the view's tokens.
        seen = await api.get(
            f"/api/user-history/{user_id}",
            headers={**ADMIN, CONSISTENCY: merge(logged.headers[CONSISTENCY], viewed.headers[CONSISTENCY])},
        )
        assert [i["type"] for i in seen.json()["data"]["items"]] == [
            "property.viewed",
            "user.logged_in",
            "user.registered",
        ], seen.text
        closed = await user_api.delete(f"/api/users/{user_id}", headers=auth)
        assert closed.status_code == 200, closed.text
    late = new_event(
        type="search.performed.v1",
        subject=user_id,
        data={"userId": user_id, "query": "after closing", "filters": {}, "resultCount": 0},
        service="search",
        userid=user_id,
    )
    sent = await (await producer.send("searches", encode(late), key=user_id.encode()))
    token = merge(
        viewed.headers[CONSISTENCY], closed.headers[CONSISTENCY], f"{sent.topic}:{sent.partition}:{sent.offset}"
    )
    headers = {**ADMIN, CONSISTENCY: token}
    for path in ("", "/recent", "/properties", "/searches"):
        answer = await api.get(f"/api/user-history/{user_id}{path}", headers=headers)
        assert answer.status_code == 200 and "X-Consistency" not in answer.headers, answer.text
        assert answer.json()["data"]["items"] == [], path
    stats = (await api.get(f"/api/user-history/{user_id}/stats", headers=headers)).json()["data"]
    assert (stats["accountClosed"], stats["totalActivities"]) == (True, 0)
    owner_stats = (await api.get(f"/api/user-history/{owner}/stats", headers=headers)).json()["data"]
    assert owner_stats["viewsReceived"] == 1
    schema = await live_schema(pg, history.namespace)
    rows = await pg.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE user_id = %s), count(*) FILTER (WHERE user_id IS NULL) FROM {}"
            " WHERE property_id = %s OR user_id = %s"
        ).format(sql.Identifier(schema, "activities")),
        (user_id, listed.json()["data"]["id"], user_id),
    )
    assert await rows.fetchone() == (0, 1), "no row of theirs; their view kept, anonymous"
    redis = Redis.from_url(settings.redis_url)
    try:
        generation = schema.rsplit("_g", 1)[1]
        prefix = f"history:{history.namespace}:g{generation}:"
        assert await redis.exists(f"{prefix}recent:{user_id}", f"{prefix}recent:{user_id}:docs") == 0
        assert await redis.exists(f"{prefix}erased:{user_id}") == 1
    finally:
        await redis.aclose()


# ---- rebuilds ----


async def everything_about(api: httpx.AsyncClient, story: Story) -> dict[str, Any]:
    return {
        path: (await read(api, story, path, **params)).json()["data"]
        for path, params in (
            ("", {"limit": 100}),
            ("/recent", {"limit": 50}),
            ("/properties", {}),
            ("/searches", {}),
            ("/timeline", {}),
            ("/stats", {}),
        )
    }


async def test_a_full_rebuild_while_a_client_queries_changes_nothing_anyone_sees(api, story, history, pg):
    before = await everything_about(api, story)
    schema_before = await live_schema(pg, history.namespace)
    rows_before = await user_rows(pg, schema_before, [story.user_id])
    problems: list[str] = []
    answers = 0
    stop = asyncio.Event()

    async def keep_querying() -> None:
        nonlocal answers
        paths = ("", "/recent", "/properties", "/timeline", "/stats")
        while not stop.is_set():
            for path in paths:
                try:
                    answer = await api.get(f"/api/user-history/{story.user_id}{path}", headers=story.auth)
                except httpx.HTTPError as exc:
                    problems.append(f"{path}: {exc!r}")
                    continue
                answers += 1
                if answer.status_code != 200:
                    problems.append(f"{path}: {answer.status_code} {answer.text[:200]}")
                    continue
                data = answer.json()["data"]
                empty = data.get("totalActivities") == 0 if path == "/stats" else not data["items"]
                if empty:
                    problems.append(f"{path}: empty answer")

    client = asyncio.create_task(keep_querying())
    try:
        started = await api.post("/api/user-history/replay", json={}, headers=ADMIN)
        assert started.status_code == 202, started.text
        job_id = started.json()["data"]["jobId"]
        assert started.headers["Location"] == f"/api/user-history/replay/{job_id}"
        # With the 202's token the job is found at once.
        found = await api.get(started.headers["Location"], headers={**ADMIN, CONSISTENCY: started.headers[CONSISTENCY]})
        assert found.status_code == 200 and found.json()["data"]["state"] in ("queued", "running", "completed")
        job = await wait_for_job(api, ADMIN, job_id, within=240)
    finally:
        stop.set()
        await client
    assert job["state"] == "completed", job
    assert job["phase"] == "done" and job["eventsTotal"] > 0 and job["eventsProcessed"] >= job["eventsTotal"]
    assert job["eventsPerSecond"] and job["eventsPerSecond"] > 0
    assert problems == [] and answers > 20, (problems[:10], answers)
    schema_after = await live_schema(pg, history.namespace)
    assert schema_after != schema_before
    dropped = await pg.execute("SELECT to_regnamespace(%s)", (schema_before,))
    assert (await dropped.fetchone())[0] is None, "the old generation is dropped"
    assert await everything_about(api, story) == before
    assert await user_rows(pg, schema_after, [story.user_id]) == rows_before


async def test_one_user_rebuilt_from_a_time_replaces_only_their_rows(api, story, history, pg):
    before = await everything_about(api, story)
    schema = await live_schema(pg, history.namespace)
    rows_before = await user_rows(pg, schema, [story.user_id])
    others = await pg.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE user_id <> %s").format(sql.Identifier(schema, "activities")),
        (story.user_id,),
    )
    others_before = (await others.fetchone())[0]
    started = await api.post(
        "/api/user-history/replay",
        json={"userId": story.user_id, "from": format_time(story.listed_at)},
        headers=ADMIN,
    )
    assert started.status_code == 202, started.text
    job = await wait_for_job(api, ADMIN, started.json()["data"]["jobId"], within=180)
    assert job["state"] == "completed" and job["userId"] == story.user_id, job
    assert await live_schema(pg, history.namespace) == schema, "a one-user rebuild swaps no generation"
    assert await user_rows(pg, schema, [story.user_id]) == rows_before
    assert await everything_about(api, story) == before
    others = await pg.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE user_id <> %s").format(sql.Identifier(schema, "activities")),
        (story.user_id,),
    )
    assert (await others.fetchone())[0] >= others_before


async def test_a_point_in_time_copy_is_history_as_it_was_then(api, story):
    started = await api.post(
        "/api/user-history/replay",
        json={"from": format_time(story.started), "until": format_time(story.listed_at)},
        headers=ADMIN,
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["data"]["jobId"]
    job = await wait_for_job(api, ADMIN, job_id, within=180)
    assert job["state"] == "completed" and job["snapshot"] == job_id, job
    then = (await read(api, story, snapshot=job_id, limit=100)).json()["data"]["items"]
    assert [item["type"] for item in then] == STORY[STORY.index("property.created") :]
    stats = (await read(api, story, "/stats", snapshot=job_id)).json()["data"]
    assert (stats["listingsCreated"], stats["viewsReceived"], stats["totalActivities"]) == (1, 0, 5)
    now = (await read(api, story, limit=100)).json()["data"]["items"]
    assert [item["type"] for item in now] == STORY, "the live history is untouched"


async def test_a_point_in_time_copy_past_its_retention_is_dropped(api, story, history, pg):
    """The replay worker drops copies older than HI_HISTORY_SNAPSHOT_RETENTION_SECONDS between jobs; the
    job stays, saying when its copy went, and reading the copy is then a 404."""
    history.replayer.stop()
    history.replayer = history.new_replayer(HI_HISTORY_SNAPSHOT_RETENTION_SECONDS="3")
    history.replayer.start()
    try:
        until = {"until": format_time(story.listed_at)}
        started = await api.post("/api/user-history/replay", json=until, headers=ADMIN)
        assert started.status_code == 202, started.text
        job_id = started.json()["data"]["jobId"]
        job = await wait_for_job(api, ADMIN, job_id, within=180)
        assert job["snapshot"] == job_id and job["snapshotExpiresAt"] and job["snapshotDroppedAt"] is None, job
        assert (await read(api, story, snapshot=job_id)).status_code == 200

        async def status() -> dict[str, Any]:
            return (await api.get(f"/api/user-history/replay/{job_id}", headers=ADMIN)).json()["data"]

        dropped = await eventually(status, until=lambda j: j["snapshotDroppedAt"] is not None, within=60, every=0.5)
        assert dropped["snapshot"] is None and dropped["state"] == "completed", dropped
        gone = await api.get(f"/api/user-history/{story.user_id}", params={"snapshot": job_id}, headers=story.auth)
        assert gone.status_code == 404 and gone.json()["errors"][0]["field"] == "snapshot", gone.text
        cursor = await pg.execute("SELECT state FROM user_history_generations WHERE job_id = %s", (job_id,))
        assert [state for (state,) in await cursor.fetchall()] == ["dropped"]
    finally:
        history.replayer.stop()
        history.replayer = history.new_replayer()
        history.replayer.start()


async def test_a_rebuild_killed_while_loading_resumes_and_converges(api, story, history, pg):
    """SIGKILL the replay worker in the middle of the bulk load; a new one resumes the job from the
    positions written with its rows, and the result is the same as before, to the row."""
    before = await everything_about(api, story)
    rows_before = await user_rows(pg, await live_schema(pg, history.namespace), [story.user_id])
    # A fresh log holds a few thousand events, loaded in a fraction of a second: this worker reads them
    # gently (the operator's rate ceiling), so the kill lands in the load and not after it.
    history.replayer.stop()
    history.replayer = history.new_replayer(
        HI_HISTORY_REBUILD_BATCH_SIZE="50", HI_HISTORY_REBUILD_MAX_EVENTS_PER_SECOND="200"
    )
    history.replayer.start()
    started = await api.post("/api/user-history/replay", json={}, headers=ADMIN)
    assert started.status_code == 202, started.text
    location = started.headers["Location"]

    async def job() -> dict[str, Any]:
        answer = await api.get(location, headers=ADMIN)
        return answer.json().get("data") or {}

    loading = await eventually(
        job, until=lambda j: j.get("phase") == "loading" and j["eventsProcessed"] > 0, within=120, every=0.05
    )
    assert loading["eventsProcessed"] < loading["eventsTotal"], "killed in the middle of the load"
    history.replayer.kill()
    history.replayer = history.new_replayer()
    history.replayer.start()
    finished = await wait_for_job(api, ADMIN, loading["jobId"], within=240)
    assert finished["state"] == "completed", finished
    assert finished["generation"] == loading["generation"], "the job resumed into its own generation"
    assert await everything_about(api, story) == before
    assert await user_rows(pg, await live_schema(pg, history.namespace), [story.user_id]) == rows_before


async def test_kafka_consumer_groups_reset_converges_to_the_same_tables(history, pg, settings):
    """The operator's procedure, run as an operator runs it: stop the worker, `make replay-history`
    (Kafka's consumer-groups tool resets the group to the earliest offsets, the worker re-reads every
    event), and compare. Other tests on this machine keep producing meanwhile: what arrives later is left
    out of the comparison, and accounts closed meanwhile are erased on both sides."""
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ops.history_replay", "kafka-reset", "--no-run"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **history.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "stop the history worker first" in refused.stderr, refused.stdout
    history.projection.stop()
    schema = await live_schema(pg, history.namespace)
    copy = f"history_reset_{uuid.uuid4().hex[:8]}"
    await pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(copy)))
    try:
        for table in ("activities", "property_owners", "erased_users"):
            await pg.execute(
                sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(
                    sql.Identifier(copy, table), sql.Identifier(schema, table)
                )
            )
        cursor = await pg.execute(
            'SELECT topic, partition, "offset" FROM projection_checkpoints WHERE projection = %s',
            (f"user-history:{history.namespace}:g{schema.rsplit('_g', 1)[1]}:postgres",),
        )
        applied = await cursor.fetchall()
        assert applied, "the live generation has a checkpoint"
        started = time.monotonic()
        replay = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "ops.history_replay", "kafka-reset", "--within", "600"],
            cwd=PROJECT_ROOT,
            env={**os.environ, **history.env},
            capture_output=True,
            text=True,
            timeout=700,
        )
        assert replay.returncode == 0, replay.stdout[-2000:] + replay.stderr[-2000:]
        assert "--reset-offsets --to-earliest --all-topics --execute" in replay.stdout
        replayed = re.search(r"Replayed ([0-9,]+) events", replay.stdout)
        assert replayed, replay.stdout[-2000:]
        # Everything from the first offset of every partition, not only what this test produced.
        assert int(replayed[1].replace(",", "")) > sum(offset for _, _, offset in applied) // 2
        assert time.monotonic() - started < 600
        for table in ("activities", "property_owners"):
            assert await fingerprint(pg, copy, schema, table, applied, before=True) == await fingerprint(
                pg, copy, schema, table, applied, before=False
            ), table
        erased_before = await pg.execute(sql.SQL("SELECT user_id FROM {}").format(sql.Identifier(copy, "erased_users")))
        erased_after = await pg.execute(
            sql.SQL("SELECT user_id FROM {}").format(sql.Identifier(schema, "erased_users"))
        )
        assert {r[0] for r in await erased_before.fetchall()} <= {r[0] for r in await erased_after.fetchall()}
    finally:
        await pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(copy)))
        history.projection = history.new_projection()
        history.projection.start()


async def fingerprint(pg, copy: str, schema: str, table: str, applied, before: bool) -> tuple[int, str]:
    """Row count and md5 of every column of the rows up to the checkpoint taken before the reset, with
    accounts closed since then erased as the projection erases them."""
    source = sql.Identifier(copy if before else schema, table)
    erased = sql.Identifier(schema, "erased_users")
    topics, partitions, offsets = zip(*applied, strict=True)
    if table == "activities":
        row = sql.SQL(
            "concat_ws('|', a.event_id, CASE WHEN a.user_id IN (SELECT user_id FROM {e}) THEN NULL ELSE a.user_id END,"
            " a.activity_type, a.category, a.event_type, a.subject, a.property_id, a.occurred_at, a.summary,"
            " a.details::text, a.source_topic, a.source_partition, a.source_offset)"
        ).format(e=erased)
        keep = sql.SQL("NOT (a.activity_type <> 'property.viewed' AND a.user_id IN (SELECT user_id FROM {e}))").format(
            e=erased
        )
        key = sql.SQL("a.event_id")
    else:
        row = sql.SQL("concat_ws('|', a.property_id, a.owner_id, a.source_topic, a.source_partition, a.source_offset)")
        keep = sql.SQL("true")
        key = sql.SQL("a.property_id")
    cursor = await pg.execute(
        sql.SQL(
            "SELECT count(*), md5(string_agg({row}, ',' ORDER BY {key})) FROM {source} a"
            " JOIN unnest(%s::text[], %s::integer[], %s::bigint[]) AS c(topic, partition, last)"
            " ON a.source_topic = c.topic AND a.source_partition = c.partition"
            " WHERE a.source_offset <= c.last AND {keep}"
        ).format(row=row, key=key, source=source, keep=keep),
        (list(topics), list(partitions), list(offsets)),
    )
    return await cursor.fetchone()
