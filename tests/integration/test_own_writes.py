"""Read-your-writes for a client that knows nothing of consistency tokens (a browser, an app, curl):
the real user, property and file slices, signed in as a real user, and not one `X-Consistency-Token`
sent, only the Authorization header. Each step reads right after the write it depends on."""

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from api.common import own_writes
from api.common.kafka import Position
from api.common.revocation import closed_account_key, deny_list_check
from tests.support.files import png_image, running_file_slice
from tests.support.properties import SEED_BODY
from tests.support.users import PASSWORD, registration, running_user_slice

CONSISTENCY = "X-Consistency-Token"


@pytest.fixture(scope="module")
async def users(stack, tmp_path_factory):
    async with running_user_slice(tmp_path_factory.mktemp("own-writes"), stack.as_env()) as slice_:
        yield slice_


@pytest.fixture(scope="module")
async def files(stack, settings, tmp_path_factory):
    logs = tmp_path_factory.mktemp("own-writes-files")
    suffix = f"own-writes-{uuid.uuid4().hex[:8]}"
    async with running_file_slice(logs, stack.as_env(), settings.kafka_bootstrap, suffix) as slice_:
        yield slice_


@pytest.fixture(scope="module")
async def user_api(users):
    async with users.client() as client:
        yield client


@pytest.fixture(scope="module")
async def property_api(users):
    async with users.properties.client() as client:
        yield client


@pytest.fixture(scope="module")
async def file_api(files):
    async with files.client() as client:
        yield client


@pytest.fixture
async def redis(settings):
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


def an_address() -> dict[str, str]:
    n = uuid.uuid4().int
    return {"X-Forwarded-For": f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250}"}


async def sign_up_and_in(user_api) -> tuple[int, int, dict]:
    """Registration, then login at once, as a client would: no token between them."""
    body = registration()
    made = await user_api.post("/api/auth/register", json=body, headers=an_address())
    logged = await user_api.post(
        "/api/auth/login", json={"email": body["email"], "password": PASSWORD}, headers=an_address()
    )
    return made.status_code, logged.status_code, logged.json()


async def a_session(user_api) -> tuple[str, dict[str, str]]:
    made, logged, answer = await sign_up_and_in(user_api)
    assert (made, logged) == (201, 200), answer
    return answer["data"]["userId"], {"Authorization": f"Bearer {answer['data']['accessToken']}"}


async def test_sign_up_then_sign_in_at_once_twenty_of_twenty(user_api):
    answers = await asyncio.gather(*(sign_up_and_in(user_api) for _ in range(20)))
    assert [(made, logged) for made, logged, _ in answers] == [(201, 200)] * 20, [a[2] for a in answers]


async def test_an_upload_downloads_at_once(user_api, file_api):
    _, auth = await a_session(user_api)
    for shade in range(5):
        content = png_image(color=(shade * 40, 90, 160))
        made = await file_api.post(
            "/api/files/upload", files={"file": ("plan.png", content, "application/octet-stream")}, headers=auth
        )
        assert made.status_code == 201, made.text
        got = await file_api.get(made.headers["Location"], headers=auth)
        assert got.status_code == 200, got.text
        assert got.content == content and "X-Consistency" not in got.headers


async def test_a_new_listing_is_found_at_once_in_every_service(user_api, property_api, file_api):
    user_id, auth = await a_session(user_api)

    async def listed_by(api, path: str, property_id: str) -> bool:
        answer = await api.get(path, headers=auth)
        assert answer.status_code == 200, answer.text
        return property_id in [item["id"] for item in answer.json()["data"]["items"]]

    async def details(property_id: str) -> bool:
        answer = await property_api.get(f"/api/properties/{property_id}", headers=auth)
        return answer.status_code == 200 and answer.json()["data"]["id"] == property_id

    async def files_listed(property_id: str) -> bool:
        answer = await file_api.get(f"/api/files/property/{property_id}", headers=auth)
        return answer.status_code == 200 and answer.json()["data"]["items"] == []

    reads = {
        "8082 details": details,
        "8082 owner's listings": lambda pid: listed_by(property_api, f"/api/properties/user/{user_id}", pid),
        "8081 user's properties": lambda pid: listed_by(user_api, f"/api/users/{user_id}/properties", pid),
        "8086 its files": files_listed,
    }
    missed = []
    for _ in range(3):
        for name, read in reads.items():  # each read comes right after a create of its own
            made = await property_api.post("/api/properties", json=SEED_BODY, headers=auth)
            assert made.status_code == 201, made.text
            if not await read(made.json()["data"]["id"]):
                missed.append(name)
    assert missed == []


async def test_an_update_then_a_read_shows_the_new_values_and_a_delete_is_404_at_once(user_api, property_api):
    _, auth = await a_session(user_api)
    made = await property_api.post("/api/properties", json=SEED_BODY, headers=auth)
    assert made.status_code == 201, made.text
    where = made.headers["Location"]
    for step in range(1, 6):
        price = SEED_BODY["price"] + step * 10_000
        changed = await property_api.put(where, json={"price": price, "title": f"3BHK, step {step}"}, headers=auth)
        assert changed.status_code == 200, changed.text
        shown = (await property_api.get(where, headers=auth)).json()["data"]
        assert (shown["price"], shown["title"]) == (price, f"3BHK, step {step}")
    deleted = await property_api.delete(where, headers=auth)
    assert deleted.status_code == 200, deleted.text
    gone = await property_api.get(where, headers=auth)
    assert gone.status_code == 404, gone.text


async def test_an_anonymous_client_with_the_creation_token_finds_the_listings_files(user_api, property_api, file_api):
    _, auth = await a_session(user_api)
    for _ in range(5):
        made = await property_api.post("/api/properties", json=SEED_BODY, headers=auth)
        assert made.status_code == 201, made.text
        its_files = await file_api.get(
            f"/api/files/property/{made.json()['data']['id']}", headers={CONSISTENCY: made.headers[CONSISTENCY]}
        )
        assert its_files.status_code == 200, its_files.text


async def test_positions_merge_to_the_highest_offset_per_partition_in_any_order(redis):
    writer = own_writes.user_writer(f"user-{uuid.uuid4().hex[:12]}")
    later, earlier = [Position("properties", 3, 90), Position("users", 1, 7)], [Position("properties", 3, 40)]
    await asyncio.gather(
        own_writes.remember(redis, writer, later, wait_seconds=2.0),
        own_writes.remember(redis, writer, earlier, wait_seconds=2.0),
    )
    await own_writes.remember(redis, writer, [Position("files", 0, 5)], wait_seconds=2.0)
    assert await own_writes.recall(redis, writer) == (
        Position("files", 0, 5),
        Position("properties", 3, 90),
        Position("users", 1, 7),
    )
    assert 0 < await redis.pttl(own_writes.writes_key(writer)) <= own_writes.life_ms(2.0)


async def test_the_deny_list_check_brings_the_callers_own_writes_and_still_refuses(redis):
    user_id = f"user-{uuid.uuid4().hex[:12]}"
    await own_writes.remember(redis, own_writes.user_writer(user_id), [Position("users", 2, 11)], wait_seconds=2.0)
    check = deny_list_check(redis)
    standing = await check(uuid.uuid4().hex, user_id, f"sess-{uuid.uuid4().hex}")
    assert not standing.revoked and standing.own_writes == (Position("users", 2, 11),)
    await redis.set(closed_account_key(user_id), b"1", ex=30)
    assert (await check(uuid.uuid4().hex, user_id, f"sess-{uuid.uuid4().hex}")).revoked
