"""Views count once per viewer and window, and an address cannot make up viewers: nobody pushes a
listing into "featured" by sending views. Against the real stack (Redis, Kafka, the projection)."""

import uuid

import pytest

from tests.support.properties import SEED_BODY, bearer, running_property_slice
from tests.support.waiting import eventually

CONSISTENCY = "X-Consistency-Token"
ANONYMOUS_PER_ADDRESS = 3
PER_ADDRESS_PER_MINUTE = 12


@pytest.fixture(scope="module")
async def api(stack, tmp_path_factory):
    env = {
        **stack.as_env(),
        # The test client speaks for addresses of its own (a proxy we trust), so no other test shares them.
        "HI_TRUSTED_PROXIES": "127.0.0.1",
        "HI_VIEW_MAX_ANONYMOUS_PER_ADDRESS": str(ANONYMOUS_PER_ADDRESS),
        "HI_VIEW_MAX_PER_ADDRESS_PER_MINUTE": str(PER_ADDRESS_PER_MINUTE),
    }
    async with running_property_slice(tmp_path_factory.mktemp("property-views"), env) as slice_:
        async with slice_.client() as client:
            yield client


def an_address() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


async def a_listing(api) -> tuple[str, dict[str, str]]:
    made = await api.post("/api/properties", json=SEED_BODY, headers=bearer(f"user-{uuid.uuid4().hex[:12]}"))
    assert made.status_code == 201, made.text
    return made.headers["Location"], {CONSISTENCY: made.headers[CONSISTENCY]}


async def view(api, where: str, **headers: str):
    answer = await api.post(f"{where}/view", headers=headers)
    assert answer.status_code == 202, answer.text
    return answer


async def view_count(api, where: str, expected: int) -> int:
    """The count once the projection has caught up with the views counted (it never passes them: views
    not counted produce no event at all)."""

    async def count() -> int:
        answer = await api.get(where)
        assert answer.status_code == 200
        found: int = answer.json()["data"]["viewCount"]
        return found

    return await eventually(count, until=lambda n: n >= expected, within=30)


async def test_a_viewer_counts_once_per_window(api):
    where, token = await a_listing(api)
    asha, ravi = bearer(f"user-{uuid.uuid4().hex[:12]}"), bearer(f"user-{uuid.uuid4().hex[:12]}")
    address = {"X-Forwarded-For": an_address(), "User-Agent": "Mozilla/5.0 (Linux; Android 14)"}
    answers = [
        await view(api, where, **token, **asha),
        await view(api, where, **asha),  # again, signed in: not counted
        await view(api, where, **ravi),
        await view(api, where, **address),
        await view(api, where, **address),  # again, the same browser: not counted
    ]
    counted = [a.json()["data"]["counted"] for a in answers]
    assert counted == [True, False, True, True, False]
    assert all(CONSISTENCY in a.headers for a in answers if a.json()["data"]["counted"])
    assert all(CONSISTENCY not in a.headers for a in answers if not a.json()["data"]["counted"])
    assert await view_count(api, where, 3) == 3


async def test_one_address_cannot_make_up_viewers(api):
    where, token = await a_listing(api)
    address = an_address()
    answers = [
        await view(api, where, **token, **{"X-Forwarded-For": address, "User-Agent": f"bot/{n}"}) for n in range(8)
    ]
    counted = [a for a in answers if a.json()["data"]["counted"]]
    assert len(counted) == ANONYMOUS_PER_ADDRESS
    elsewhere = await view(api, where, **{"X-Forwarded-For": an_address(), "User-Agent": "bot/0"})
    assert elsewhere.json()["data"]["counted"] is True  # another address is another viewer
    assert await view_count(api, where, ANONYMOUS_PER_ADDRESS + 1) == ANONYMOUS_PER_ADDRESS + 1


async def test_an_address_sending_views_too_fast_is_429(api):
    where, token = await a_listing(api)
    address = an_address()
    statuses = []
    for n in range(PER_ADDRESS_PER_MINUTE + 3):
        answer = await api.post(f"{where}/view", headers={**token, "X-Forwarded-For": address, "User-Agent": f"{n}"})
        statuses.append(answer.status_code)
    assert statuses[:PER_ADDRESS_PER_MINUTE] == [202] * PER_ADDRESS_PER_MINUTE
    assert statuses[PER_ADDRESS_PER_MINUTE:] == [429] * 3
    refused = await api.post(f"{where}/view", headers={"X-Forwarded-For": address})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["success"] is False
