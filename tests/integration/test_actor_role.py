"""Admin power comes from the verified access token only: the routes write the token's role into the
command (`api.common.auth.actor_role`), and no request can put one of its own there. A command body naming
a role is refused (422 naming it), and where a command has no body, or takes form fields, a role sent
along is ignored: a non-admin stays a non-admin."""

import pytest
from pydantic.alias_generators import to_camel

from tests.support.files import png_image
from tests.support.properties import SEED_BODY, bearer
from tests.support.users import registration, running_user_slice

CONSISTENCY = "X-Consistency-Token"
CLAIMS = ({"actorRole": "ADMIN"}, {"actor_role": "ADMIN"}, {"role": "ADMIN"})


@pytest.fixture(scope="module")
async def users(stack, tmp_path_factory):
    async with running_user_slice(tmp_path_factory.mktemp("user-slice"), stack.as_env()) as slice_:
        yield slice_


@pytest.fixture(scope="module")
async def api(users):
    async with users.client() as client:
        yield client


@pytest.fixture(scope="module")
async def property_api(users):
    async with users.properties.client() as client:
        yield client


async def a_listing(property_api, owner: str) -> tuple[str, dict[str, str]]:
    """Its URL, and the header that reads it as created."""
    made = await property_api.post("/api/properties", json=SEED_BODY, headers=bearer(owner))
    assert made.status_code == 201, made.text
    return made.headers["Location"], {CONSISTENCY: made.headers[CONSISTENCY]}


def named(claim: dict[str, str]) -> str:
    """The field an error names: the wire's camelCase."""
    return to_camel(next(iter(claim)))


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda claim: next(iter(claim)))
async def test_a_listings_update_naming_a_role_is_refused_and_features_nothing(property_api, claim):
    owner = "user-owner-" + next(iter(claim)).lower()
    where, created = await a_listing(property_api, owner)
    for user in ("user-mallory", owner):
        answer = await property_api.put(where, json={"featured": True, **claim}, headers=bearer(user))
        assert answer.status_code == 422, answer.text
        assert named(claim) in [error["field"] for error in answer.json()["errors"]]
    assert (await property_api.get(where, headers=created)).json()["data"]["featured"] is False


async def test_a_role_sent_with_someone_elses_listing_images_or_delete_is_ignored(property_api):
    where, created = await a_listing(property_api, "user-owner")
    mallory = bearer("user-mallory")
    upload = await property_api.post(
        f"{where}/images",
        files={"images": ("front.png", png_image(), "image/png")},
        data={"actorRole": "ADMIN", "actor_role": "ADMIN"},
        headers=mallory,
    )
    assert upload.status_code == 403, upload.text
    gone = await property_api.request("DELETE", where, json={"actorRole": "ADMIN"}, headers=mallory)
    assert gone.status_code == 403, gone.text
    assert (await property_api.get(where, headers=created)).status_code == 200


async def test_a_role_sent_to_someone_elses_account_is_refused_or_ignored(api):
    made = await api.post("/api/auth/register", json=registration(), headers={"X-Forwarded-For": "10.77.0.1"})
    assert made.status_code == 201, made.text
    owner = made.json()["data"]["id"]
    mallory = bearer("user-mallory")
    where = f"/api/users/{owner}"
    for claim in CLAIMS:
        update = await api.put(where, json={"name": "Mallory", **claim}, headers=mallory)
        assert update.status_code == 422, update.text
        assert named(claim) in [error["field"] for error in update.json()["errors"]]
    recount = await api.request("POST", f"{where}/property-count", json={"actorRole": "ADMIN"}, headers=mallory)
    assert recount.status_code == 403, recount.text
    closing = await api.request("DELETE", where, json={"actorRole": "ADMIN"}, headers=mallory)
    assert closing.status_code == 403, closing.text
