"""The ten user-service endpoints against the real stack: registration through the registry and
account deciders, login, rotating refresh tokens, logout honoured by another service, profiles,
search, a user's listings and their count, and account deletion."""

import asyncio
import base64
import json
import sys
import uuid

import httpx
import pytest
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from api.common.auth import issue_access_token
from api.common.idempotency import idempotent
from api.services import by_name
from config.settings import PROJECT_ROOT
from schemas.codec import encode
from schemas.envelope import new_event
from schemas.ids import new_id
from schemas.topics import USER_COMMANDS
from schemas.users import DELETE_ACCOUNT, DeleteAccount
from tests.support.properties import SEED_BODY
from tests.support.services import ServiceProcess
from tests.support.users import PASSWORD, TEST_SERVICE_ENV, an_email, registration, running_user_slice
from tests.support.waiting import eventually

CONSISTENCY = "X-Consistency-Token"


@pytest.fixture(scope="module")
async def users(stack, tmp_path_factory):
    async with running_user_slice(tmp_path_factory.mktemp("user-slice"), stack.as_env()) as slice_:
        yield slice_


@pytest.fixture(scope="module")
async def api(users):
    async with users.client() as client:
        yield client


@pytest.fixture(scope="module")
async def strict_api(users, stack, tmp_path_factory):
    """A second user service (the same workers) with limits low enough to reach in a test."""
    limits = {
        "HI_REGISTRATION_MAX_PER_ADDRESS": "3",
        "HI_REGISTRATION_MAX_PER_EMAIL": "2",
        "HI_LOGIN_ADDRESS_FREE_FAILURES": "8",
        "HI_USER_SEARCH_MAX_PER_MINUTE": "5",
    }
    log = tmp_path_factory.mktemp("strict-user-service") / "user-service.log"
    service = ServiceProcess(by_name("user"), log, {**stack.as_env(), **TEST_SERVICE_ENV, **limits})
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            yield client
    finally:
        service.stop()


@pytest.fixture(scope="module")
async def property_api(users):
    async with users.properties.client() as client:
        yield client


def an_ip() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250}"


async def sign_up(api, ip: str | None = None, **overrides):
    body = registration(**overrides)
    answer = await api.post("/api/auth/register", json=body, headers={"X-Forwarded-For": ip or an_ip()})
    assert answer.status_code == 201, answer.text
    return body, answer


async def log_in(api, email: str, password: str = PASSWORD, token: str | None = None, ip: str | None = None):
    headers = {"X-Forwarded-For": ip or an_ip()}
    if token:
        headers[CONSISTENCY] = token
    return await api.post("/api/auth/login", json={"email": email, "password": password}, headers=headers)


async def a_session(api, **overrides):
    body, made = await sign_up(api, **overrides)
    logged = await log_in(api, body["email"], token=made.headers[CONSISTENCY])
    assert logged.status_code == 200, logged.text
    data = logged.json()["data"]
    return data["userId"], {"Authorization": f"Bearer {data['accessToken']}"}, data, made


# ---- register ----


async def test_register_answers_201_with_the_location_of_the_new_user(api):
    body, answer = await sign_up(api, email="  Priya." + uuid.uuid4().hex[:8] + "@Example.IN ")
    data = answer.json()["data"]
    assert answer.headers["Location"] == f"/api/users/{data['id']}" and data["id"].startswith("user-")
    assert data["email"] == body["email"].strip().lower()
    assert "password" not in answer.text and "argon2" not in answer.text
    assert answer.headers[CONSISTENCY].startswith("users:")


async def test_fifty_concurrent_registrations_of_one_email_give_one_201_and_49_409(api):
    email = an_email()
    answers = await asyncio.gather(*(api.post("/api/auth/register", json=registration(email)) for _ in range(50)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] + [409] * 49, statuses
    # Differently spelled, the same address.
    again = await api.post("/api/auth/register", json=registration(email.upper()))
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "email"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "qwertyuiop"}, "password"),  # long enough, but among the most common
        ({"phone": "9876543210"}, "phone"),
        ({"name": ""}, "name"),
    ],
)
async def test_invalid_registration_is_422_naming_the_field(api, change, field):
    answer = await api.post("/api/auth/register", json=registration(**change))
    assert answer.status_code == 422, answer.text
    assert field in [error["field"] for error in answer.json()["errors"]]


async def test_registrations_from_one_address_are_limited(strict_api):
    ip = an_ip()
    for _ in range(3):
        await sign_up(strict_api, ip=ip)
    limited = await strict_api.post("/api/auth/register", json=registration(), headers={"X-Forwarded-For": ip})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    await sign_up(strict_api, ip=an_ip())


async def test_registrations_of_one_email_are_limited_so_nobody_can_keep_asking_whether_it_has_an_account(
    strict_api,
):
    body = registration()
    answers = [
        await strict_api.post("/api/auth/register", json=body, headers={"X-Forwarded-For": an_ip()}) for _ in range(3)
    ]
    assert [answer.status_code for answer in answers] == [201, 409, 429]
    assert int(answers[-1].headers["Retry-After"]) > 0


# ---- login ----


async def test_login_gives_an_access_token_and_a_refresh_token(api):
    user_id, auth, session, _ = await a_session(api)
    assert session["tokenType"] == "Bearer" and session["refreshToken"] and session["role"] == "USER"
    me = await api.get(f"/api/users/{user_id}", headers=auth)
    assert me.status_code == 200 and me.json()["data"]["email"]


async def test_unknown_email_and_wrong_password_get_the_same_401(api):
    body, made = await sign_up(api)
    wrong = await log_in(api, body["email"], "Wrong-password-123", token=made.headers[CONSISTENCY])
    unknown = await log_in(api, an_email(), PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def a_known_account(api):
    """An account the login can already find (its registration projected)."""
    body, made = await sign_up(api)
    assert (await log_in(api, body["email"], token=made.headers[CONSISTENCY])).status_code == 200
    return body["email"]


async def wrong(api, email: str, ip: str, times: int = 1) -> list[int]:
    return [(await log_in(api, email, "Wrong-password-123", ip=ip)).status_code for _ in range(times)]


async def test_five_wrong_passwords_from_one_address_never_lock_the_owner_out(api):
    """No lockout an attacker can trigger (ASVS V2.2.1): the guesser's address waits, the owner elsewhere
    logs in at once."""
    email, attacker = await a_known_account(api), an_ip()
    assert await wrong(api, email, attacker, 5) == [401] * 5
    slowed = await log_in(api, email, ip=attacker)
    assert slowed.status_code == 429 and slowed.headers["Retry-After"] == "1"
    assert (await log_in(api, email, ip=an_ip())).status_code == 200


async def test_past_five_failures_each_next_attempt_from_that_address_waits_twice_as_long(api):
    email, ip = await a_known_account(api), an_ip()
    assert await wrong(api, email, ip, 5) == [401] * 5
    waits = []
    for _ in range(2):
        waiting = await log_in(api, email, "Wrong-password-123", ip=ip)
        assert waiting.status_code == 429, waiting.text
        waits.append(int(waiting.headers["Retry-After"]))
        # Only while the delay runs: then the next attempt is answered (and, wrong, counted).
        after = await eventually(lambda: wrong(api, email, ip), lambda statuses: statuses != [429])
        assert after == [401]
    assert waits == [1, 2]


async def test_eight_concurrent_wrong_passwords_cannot_all_be_tried(api):
    email, ip = await a_known_account(api), an_ip()
    guesses = [log_in(api, email, f"Wrong-password-{n}", ip=ip) for n in range(8)]
    statuses = [answer.status_code for answer in await asyncio.gather(*guesses)]
    assert statuses.count(401) <= 5 and statuses.count(429) >= 3, statuses


async def test_ten_failures_from_anywhere_delay_the_account_briefly_then_the_owner_gets_in(api):
    email = await a_known_account(api)
    for _ in range(10):
        assert await wrong(api, email, an_ip()) == [401]
    delayed = await log_in(api, email, ip=an_ip())
    assert delayed.status_code == 429 and int(delayed.headers["Retry-After"]) <= 2
    owner = await eventually(lambda: log_in(api, email, ip=an_ip()), lambda r: r.status_code != 429, within=10)
    assert owner.status_code == 200


async def test_one_address_shared_by_many_people_is_not_shut_by_their_typos(api):
    """Carrier-grade NAT: a dozen people's mistakes from one address leave it open for the next person."""
    ip, email = an_ip(), await a_known_account(api)
    for _ in range(12):
        assert await wrong(api, an_email(), ip) == [401]
    assert (await log_in(api, email, ip=ip)).status_code == 200


async def test_one_address_past_its_ceiling_of_failures_waits(api, strict_api):
    ip, email = an_ip(), await a_known_account(api)
    for _ in range(8):
        assert await wrong(strict_api, an_email(), ip) == [401]
    assert (await log_in(strict_api, email, ip=ip)).status_code == 429
    assert (await log_in(strict_api, email, ip=an_ip())).status_code == 200


async def test_the_client_is_the_rightmost_address_not_written_by_a_trusted_proxy(api):
    """The tests' client is a trusted proxy here: the hop it appends is believed, whatever the client
    wrote to its left, so varying that leftmost entry does not escape the delay."""
    email, ip = await a_known_account(api), an_ip()
    for _ in range(5):
        assert await wrong(api, email, f"{an_ip()}, {ip}") == [401]
    assert (await log_in(api, email, ip=f"{an_ip()}, {ip}")).status_code == 429
    assert (await log_in(api, email, ip=f"{ip}, {an_ip()}")).status_code == 200


# ---- refresh and logout ----


async def test_refresh_rotates_and_reusing_a_rotated_token_revokes_the_family(api):
    _, _, session, _ = await a_session(api)
    first = session["refreshToken"]
    rotated = await api.post("/api/auth/refresh", json={"refreshToken": first})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["data"]["refreshToken"]
    assert second != first and rotated.json()["data"]["accessToken"]
    reused = await api.post("/api/auth/refresh", json={"refreshToken": first})
    assert reused.status_code == 401
    # The thief's reuse cost the whole family: the legitimate newest token is dead too.
    assert (await api.post("/api/auth/refresh", json={"refreshToken": second})).status_code == 401
    assert (await api.post("/api/auth/refresh", json={"refreshToken": "made-up"})).status_code == 401


async def test_logout_revokes_the_access_token_in_every_service_and_the_refresh_token(api, property_api):
    _, auth, session, _ = await a_session(api)
    assert (await property_api.post("/api/properties", json=SEED_BODY, headers=auth)).status_code == 201
    out = await api.post("/api/auth/logout", headers=auth, json={"refreshToken": session["refreshToken"]})
    assert out.status_code == 200, out.text
    refused = await property_api.post("/api/properties", json=SEED_BODY, headers=auth)
    assert refused.status_code == 401 and refused.json()["message"] == "Access token revoked"
    assert (await api.post("/api/auth/logout", headers=auth)).status_code == 401
    assert (await api.post("/api/auth/refresh", json={"refreshToken": session["refreshToken"]})).status_code == 401


async def test_logout_refuses_every_access_token_of_the_session_in_every_service(api, property_api):
    user_id, auth, session, _ = await a_session(api)
    rotated = await api.post("/api/auth/refresh", json={"refreshToken": session["refreshToken"]})
    assert rotated.status_code == 200, rotated.text
    second = {"Authorization": f"Bearer {rotated.json()['data']['accessToken']}"}
    other_id, elsewhere, _, _ = await a_session(api)  # someone else's session is untouched
    assert (await api.post("/api/auth/logout", headers=second)).status_code == 200
    user_service = await api.put(f"/api/users/{user_id}", json={"name": "Priya R."}, headers=auth)
    property_service = await property_api.post("/api/properties", json=SEED_BODY, headers=auth)
    for refused in (user_service, property_service):
        assert refused.status_code == 401 and refused.json()["message"] == "Access token revoked"
    untouched = await api.get(f"/api/users/{other_id}", headers=elsewhere)
    assert untouched.status_code == 200 and "email" in untouched.json()["data"]


async def test_a_reused_refresh_token_refuses_every_access_token_of_its_session(api, property_api):
    _, auth, session, _ = await a_session(api)
    rotated = await api.post("/api/auth/refresh", json={"refreshToken": session["refreshToken"]})
    second = {"Authorization": f"Bearer {rotated.json()['data']['accessToken']}"}
    assert (await api.post("/api/auth/refresh", json={"refreshToken": session["refreshToken"]})).status_code == 401
    for headers in (auth, second):
        assert (await property_api.post("/api/properties", json=SEED_BODY, headers=headers)).status_code == 401
        assert (await api.post("/api/auth/logout", headers=headers)).status_code == 401


async def test_logout_needs_a_token(api):
    assert (await api.post("/api/auth/logout")).status_code == 401


# ---- profiles ----


async def test_others_see_the_public_profile_only(api):
    user_id, auth, _, made = await a_session(api)
    _, other, _, _ = await a_session(api)
    public = await api.get(f"/api/users/{user_id}", headers={**other, CONSISTENCY: made.headers[CONSISTENCY]})
    assert public.status_code == 200
    assert set(public.json()["data"]) == {"id", "name", "propertyCount", "memberSince"}
    anonymous = await api.get(f"/api/users/{user_id}")
    assert "email" not in anonymous.json()["data"] and "phone" not in anonymous.json()["data"]
    own = await api.get(f"/api/users/{user_id}", headers=auth)
    assert {"email", "phone", "role", "version"} <= set(own.json()["data"]) and own.headers["ETag"] == '"1"'


async def test_unknown_users_are_404(api):
    missing = "/api/users/user-doesnotexist"
    admin = {"Authorization": f"Bearer {issue_access_token('user-admin', 'ADMIN')}"}
    assert (await api.get(missing)).status_code == 404
    assert (await api.get(f"{missing}/properties")).status_code == 404
    assert (await api.put(missing, json={"name": "Nobody"}, headers=admin)).status_code == 404
    assert (await api.post(f"{missing}/property-count", headers=admin)).status_code == 404
    assert (await api.delete(missing, headers=admin)).status_code == 404


async def test_update_with_if_match_then_a_stale_one_conflicts(api):
    user_id, auth, _, _ = await a_session(api)
    where = f"/api/users/{user_id}"
    updated = await api.put(where, json={"name": "Priya R."}, headers={**auth, "If-Match": '"1"'})
    assert updated.status_code == 200, updated.text
    read = await api.get(where, headers={**auth, CONSISTENCY: updated.headers[CONSISTENCY]})
    assert read.json()["data"]["name"] == "Priya R." and read.headers["ETag"] == '"2"'
    stale = await api.put(where, json={"name": "Someone"}, headers={**auth, "If-Match": '"1"'})
    assert stale.status_code == 409


async def test_only_self_or_admin_may_update_or_delete(api):
    user_id, _, _, _ = await a_session(api)
    _, other, _, _ = await a_session(api)
    where = f"/api/users/{user_id}"
    assert (await api.put(where, json={"name": "Mallory"}, headers=other)).status_code == 403
    assert (await api.delete(where, headers=other)).status_code == 403
    assert (await api.post(f"{where}/property-count", headers=other)).status_code == 403
    assert (await api.put(where, json={"name": "Mallory"})).status_code == 401
    assert (await api.delete(where)).status_code == 401


@pytest.mark.parametrize(("change", "field"), [({"phone": "12345"}, "phone"), ({"name": ""}, "name")])
async def test_invalid_update_is_422_naming_the_field(api, change, field):
    user_id, auth, _, _ = await a_session(api)
    answer = await api.put(f"/api/users/{user_id}", json=change, headers=auth)
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == field


async def test_email_cannot_be_changed(api):
    user_id, auth, _, _ = await a_session(api)
    answer = await api.put(f"/api/users/{user_id}", json={"email": an_email()}, headers=auth)
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "email"


# ---- search ----


def bearer(role: str = "USER", user_id: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(user_id or new_id('user'), role)}"}


async def test_search_by_name_prefix_and_email_for_admins_only(api):
    marker = "Zq" + uuid.uuid4().hex[:8]
    body, made = await sign_up(api, name=f"{marker} Rao")
    token = {CONSISTENCY: made.headers[CONSISTENCY]}
    found = await api.get("/api/users/search", params={"q": marker.lower()}, headers={**token, **bearer()})
    assert found.status_code == 200
    items = found.json()["data"]["items"]
    assert [item["name"] for item in items] == [f"{marker} Rao"] and "email" not in items[0]
    assert "role" not in items[0]
    # The same question by email: answered, with nobody in it, unless an admin asks.
    by_email = await api.get("/api/users/search", params={"q": body["email"]}, headers={**token, **bearer()})
    assert by_email.status_code == 200
    assert by_email.json()["data"]["items"] == []
    as_admin = await api.get("/api/users/search", params={"q": body["email"]}, headers={**token, **bearer("ADMIN")})
    assert as_admin.status_code == 200
    assert [item["email"] for item in as_admin.json()["data"]["items"]] == [body["email"]]


async def test_search_pages_with_a_cursor(api):
    marker = "Pg" + uuid.uuid4().hex[:8]
    last = None
    for n in range(3):
        _, last = await sign_up(api, name=f"{marker} {n}")
    token, auth = {CONSISTENCY: last.headers[CONSISTENCY]}, bearer()
    page = {"q": marker, "limit": 2}
    first = (await api.get("/api/users/search", params=page, headers={**token, **auth})).json()["data"]
    assert len(first["items"]) == 2 and first["nextCursor"]
    rest = await api.get("/api/users/search", params={"q": marker, "cursor": first["nextCursor"]}, headers=auth)
    assert len(rest.json()["data"]["items"]) == 1 and rest.json()["data"]["nextCursor"] is None
    assert (await api.get("/api/users/search", params={"role": "KING"}, headers=bearer("ADMIN"))).status_code == 422


async def test_the_user_directory_is_for_signed_in_users_by_a_prefix_and_roles_are_for_admins(api):
    assert (await api.get("/api/users/search", params={"q": "Priya"})).status_code == 401
    for params in ({}, {"q": "P"}, {"q": " P "}):
        short = await api.get("/api/users/search", params=params, headers=bearer())
        assert short.status_code == 422 and short.json()["errors"][0]["field"] == "q", params
    admins = await api.get("/api/users/search", params={"q": "Asha", "role": "ADMIN"}, headers=bearer())
    assert admins.status_code == 403 and admins.json()["errors"][0]["field"] == "role"
    listed = await api.get("/api/users/search", params={"role": "ADMIN"}, headers=bearer("ADMIN"))
    assert listed.status_code == 200 and all(item["role"] == "ADMIN" for item in listed.json()["data"]["items"])


async def test_user_searches_are_rate_limited_per_user(strict_api):
    searcher = bearer()
    answers = [await strict_api.get("/api/users/search", params={"q": "Priya"}, headers=searcher) for _ in range(6)]
    assert [answer.status_code for answer in answers] == [200] * 5 + [429]
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert (await strict_api.get("/api/users/search", params={"q": "Priya"}, headers=bearer())).status_code == 200


# ---- listings and their count ----


async def test_listings_show_delisted_ones_only_to_self_and_the_count_is_recorded_once(api, property_api):
    user_id, auth, _, _ = await a_session(api)
    made = [await property_api.post("/api/properties", json=SEED_BODY, headers=auth) for _ in range(3)]
    assert [m.status_code for m in made] == [201] * 3, made[-1].text
    gone = await property_api.delete(made[0].headers["Location"], headers=auth)
    token = {CONSISTENCY: gone.headers[CONSISTENCY]}
    own = await api.get(f"/api/users/{user_id}/properties", headers={**auth, **token})
    assert len(own.json()["data"]["items"]) == 3
    public = await api.get(f"/api/users/{user_id}/properties", headers=token)
    assert len(public.json()["data"]["items"]) == 2
    paged = await api.get(f"/api/users/{user_id}/properties", params={"limit": 1})
    assert paged.json()["data"]["nextCursor"]
    counted = await api.post(f"/api/users/{user_id}/property-count", headers={**auth, **token})
    assert counted.status_code == 200, counted.text
    assert counted.json()["data"]["propertyCount"] == 2 and counted.json()["data"]["version"] == 2
    again = await api.post(f"/api/users/{user_id}/property-count", headers=auth)
    assert again.json()["data"] == counted.json()["data"]  # no second event, same version
    profile = await api.get(f"/api/users/{user_id}")
    assert profile.json()["data"]["propertyCount"] == 2


# ---- delete ----


async def test_delete_closes_the_account_erases_it_and_delists_its_listings(api, property_api):
    body = registration()
    user_id, auth, session, _ = await a_session(api, email=body["email"])
    listing = await property_api.post("/api/properties", json=SEED_BODY, headers=auth)
    closed = await api.delete(f"/api/users/{user_id}", headers={**auth, CONSISTENCY: listing.headers[CONSISTENCY]})
    assert closed.status_code == 200, closed.text
    assert closed.json()["data"]["delistedProperties"] == 1
    token = {CONSISTENCY: closed.headers[CONSISTENCY]}
    assert (await api.get(f"/api/users/{user_id}", headers=token)).status_code == 404
    assert (await property_api.get(listing.headers["Location"], headers=token)).status_code == 404
    assert (await log_in(api, body["email"], token=closed.headers[CONSISTENCY])).status_code == 401
    assert (await api.post("/api/auth/refresh", json={"refreshToken": session["refreshToken"]})).status_code == 401
    assert (await api.get(f"/api/users/{user_id}", headers=auth)).status_code == 401  # its token is denied


async def test_a_closed_accounts_remembered_answers_are_forgotten(api, settings):
    """An idempotency record keeps a request's answer for a day, and an answer can name a file after its
    uploader: closing the account removes that user's records, and only theirs."""
    user_id, auth, _, _ = await a_session(api)
    other, _, _, _ = await a_session(api)
    redis = Redis.from_url(settings.redis_url)
    try:

        async def answer() -> JSONResponse:
            return JSONResponse({"data": {"filename": "Priya Reddy sale deed.pdf"}}, status_code=201)

        for who in (user_id, other):
            await idempotent(redis, scope="file.upload", user_id=who, key="k1", request_fingerprint="f", answer=answer)
        assert len([key async for key in redis.scan_iter(match=f"idempotency:*:{user_id}:*")]) == 1
        closed = await api.delete(f"/api/users/{user_id}", headers=auth)
        assert closed.status_code == 200, closed.text

        async def remembered() -> list[bytes]:
            return [key async for key in redis.scan_iter(match=f"idempotency:*:{user_id}:*")]

        await eventually(remembered, until=lambda keys: keys == [], within=30)
        assert len([key async for key in redis.scan_iter(match=f"idempotency:*:{other}:*")]) == 1
    finally:
        await redis.aclose()


async def test_a_deletion_delists_its_listings_even_when_nobody_waits_for_the_answer(api, property_api, producer):
    """The account decider sends the delistings with the closing itself: a user service that died just
    after sending the deletion (here: the command produced straight to Kafka) leaves no listing up."""
    user_id, auth, _, _ = await a_session(api)
    listed = [await property_api.post("/api/properties", json=SEED_BODY, headers=auth) for _ in range(2)]
    assert [answer.status_code for answer in listed] == [201, 201]
    deletion = new_event(
        type=DELETE_ACCOUNT,
        subject=user_id,
        data=DeleteAccount(listings=tuple(answer.json()["data"]["id"] for answer in listed)).to_wire(),
        service="user",
        userid=user_id,
        event_id=new_id("cmd"),
    )
    await producer.send_and_wait(USER_COMMANDS.name, encode(deletion), key=user_id.encode())
    for answer in listed:
        location = answer.headers["Location"]
        gone = await eventually(
            lambda where=location: property_api.get(where), until=lambda r: r.status_code == 404, within=30
        )
        assert gone.status_code == 404


async def test_a_closed_accounts_email_can_be_registered_again(api):
    body = registration()
    user_id, auth, _, _ = await a_session(api, email=body["email"])
    assert (await api.delete(f"/api/users/{user_id}", headers=auth)).status_code == 200
    # the registry frees the address once it has the account decider's release: eventually, not at once
    again = await eventually(
        lambda: api.post("/api/auth/register", json=body), lambda r: r.status_code != 409, within=30, every=0.5
    )
    assert again.status_code == 201, again.text
    new_id = again.json()["data"]["id"]
    assert new_id != user_id
    logged = await log_in(api, body["email"], token=again.headers[CONSISTENCY])
    assert logged.status_code == 200 and logged.json()["data"]["userId"] == new_id


# ---- tokens and admins ----


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_forged_tokens_are_401_at_the_user_service(api):
    user_id, auth, _, _ = await a_session(api)
    token = auth["Authorization"].removeprefix("Bearer ")
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    kid = json.loads(base64.urlsafe_b64decode(head + "=="))["kid"]
    forged_claims = _b64(json.dumps({**claims, "role": "ADMIN"}).encode())
    alg_none = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    wrong_kid = _b64(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": "k-unknown"}).encode())
    expired = issue_access_token(user_id, "USER", ttl=-60)
    for forged in (
        f"{head}.{forged_claims}.{signature}",
        f"{alg_none}.{body}.",
        f"{wrong_kid}.{body}.{signature}",
        expired,
    ):
        answer = await api.put(
            f"/api/users/{user_id}", json={"name": "X"}, headers={"Authorization": f"Bearer {forged}"}
        )
        assert answer.status_code == 401, forged


async def test_the_admin_cli_creates_an_admin_through_the_command_path(api):
    email = an_email()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops.create_admin",
        "--email",
        email,
        "--name",
        "Asha Admin",
        "--password-stdin",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    out, err = await asyncio.wait_for(process.communicate(f"{PASSWORD}\n".encode()), 60)
    assert process.returncode == 0, err.decode()
    admin_id = out.decode().strip()
    assert admin_id.startswith("user-")
    logged = await eventually(lambda: log_in(api, email), lambda r: r.status_code == 200, within=10)
    assert logged.json()["data"]["role"] == "ADMIN"
    # Registering through the API never makes an admin, and the same email is taken.
    again = await api.post("/api/auth/register", json={**registration(email), "role": "ADMIN"})
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "role"
    assert (await api.post("/api/auth/register", json=registration(email))).status_code == 409
