"""The published contract is one a client can be built from: `openapi-python-client`, run as a client team
would run it, turns the user and property services' own `/openapi.json` into typed packages in the test's
temporary folder, and the seed's flow runs through them alone: register, log in, list the seed's property,
read it back, read its owner's listings from both services. Answers are parsed into the generated models
(a success into its `Success…` model, a refusal into `ErrorOut`), never read as raw JSON."""

import importlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.support.properties import SEED_BODY
from tests.support.users import UserSlice, registration, running_user_slice

CONSISTENCY = "X-Consistency-Token"
# The image routes answer JPEG, PNG or WebP bytes: the generator knows bytes as octet-stream.
GENERATOR_CONFIG = """\
post_hooks: []
content_type_overrides:
  image/jpeg: application/octet-stream
  image/png: application/octet-stream
  image/webp: application/octet-stream
"""


@pytest.fixture(scope="module")
async def users(stack, tmp_path_factory) -> AsyncIterator[UserSlice]:
    async with running_user_slice(tmp_path_factory.mktemp("generated-client"), stack.as_env()) as slice_:
        yield slice_


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Any]:
    """`generated(url, package)`: the client generated from that service's spec, imported."""
    made: list[str] = []
    sys.path.insert(0, str(tmp_path))

    def generate(url: str, package: str) -> ModuleType:
        spec = tmp_path / f"{package}.json"
        spec.write_bytes(httpx.get(f"{url}/openapi.json", timeout=30).raise_for_status().content)
        config = tmp_path / f"{package}.yml"
        config.write_text(f"package_name_override: {package}\n{GENERATOR_CONFIG}")
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("openapi-python-client")),
                "generate",
                "--path",
                str(spec),
                "--config",
                str(config),
                "--meta",
                "none",
                "--output-path",
                str(tmp_path / package),
                "--fail-on-warning",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        made.append(package)
        return importlib.import_module(package)

    yield generate
    sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name.split(".")[0] in made]:
        del sys.modules[name]


async def test_the_seed_flow_runs_through_clients_generated_from_the_published_specs(users, generated):
    user_client = generated(users.service.url, "user_client")
    property_client = generated(users.properties.service.url, "property_client")
    from property_client.api.properties import create_property, get_property, user_properties
    from property_client.models import ErrorOut, ListingIn, PropertyType
    from user_client.api.auth import login, register
    from user_client.api.users import user_properties as users_listings
    from user_client.models import LoginIn, RegisterIn

    account = registration()
    async with user_client.Client(base_url=users.service.url, timeout=httpx.Timeout(30)) as anonymous:
        registered = await register.asyncio_detailed(client=anonymous, body=RegisterIn.from_dict(account))
        assert registered.status_code == 201, registered.content
        user_id = registered.parsed.data.id
        assert user_id.startswith("user-") and registered.parsed.data.email == account["email"]
        # At once, without any token: the login waits for its own registration.
        signed_in = await login.asyncio_detailed(
            client=anonymous, body=LoginIn(email=account["email"], password=account["password"])
        )
        assert signed_in.status_code == 200, signed_in.content
        session = signed_in.parsed.data
        assert session.user_id == user_id

    async with property_client.AuthenticatedClient(
        base_url=users.properties.service.url, token=session.access_token, timeout=httpx.Timeout(30)
    ) as owner:
        made = await create_property.asyncio_detailed(client=owner, body=ListingIn.from_dict(SEED_BODY))
        assert made.status_code == 201, made.content
        listing = made.parsed.data
        assert listing.id.startswith("prop-") and listing.title == SEED_BODY["title"]
        assert made.headers["Location"] == f"/api/properties/{listing.id}"
        token = made.headers[CONSISTENCY]

        read = await get_property.asyncio_detailed(listing.id, client=owner, x_consistency_token=token)
        assert read.status_code == 200, read.content
        details = read.parsed.data
        assert (details.id, details.owner_id, details.price) == (listing.id, user_id, SEED_BODY["price"])
        assert details.property_type is PropertyType.APARTMENT and details.version == 1
        assert read.headers["ETag"] == '"1"'

        mine = await user_properties.asyncio_detailed(user_id, client=owner, x_consistency_token=token)
        assert mine.status_code == 200, mine.content
        assert [item.id for item in mine.parsed.data.items] == [listing.id]

        missing = await get_property.asyncio_detailed("prop-nosuchlisting", client=owner)
        assert missing.status_code == 404
        assert isinstance(missing.parsed, ErrorOut) and missing.parsed.success is False
        refused = await create_property.asyncio_detailed(
            client=owner, body=ListingIn.from_dict({**SEED_BODY, "price": -1})
        )
        assert refused.status_code == 422
        assert isinstance(refused.parsed, ErrorOut)
        assert [error.field for error in refused.parsed.errors] == ["price"]

    async with user_client.AuthenticatedClient(
        base_url=users.service.url, token=session.access_token, timeout=httpx.Timeout(30)
    ) as me:
        theirs = await users_listings.asyncio_detailed(user_id, client=me, x_consistency_token=token)
        assert theirs.status_code == 200, theirs.content
        assert [item.id for item in theirs.parsed.data.items] == [listing.id]
