"""A listing's image URL serves that live listing's images only, whatever else the shared blob store
holds (private documents, other listings' photos, deleted listings' photos); an upload the decider
refuses leaves no blob behind."""

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.files import jpeg_with_gps, png_image, running_file_slice
from tests.support.properties import SEED_BODY, bearer, running_property_slice

CONSISTENCY = "X-Consistency-Token"


@dataclass
class Apis:
    properties: httpx.AsyncClient
    files: httpx.AsyncClient
    blobs: Path

    def stored(self, sha256: str) -> bool:
        return (self.blobs / "sha256" / sha256[:2] / sha256).exists()

    def incoming(self) -> list[Path]:
        return list((self.blobs / "incoming").glob("*"))


@pytest.fixture(scope="module")
async def apis(stack, settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("image-access")
    (root / "files").mkdir()
    blobs = root / "files" / "blobs"
    suffix = uuid.uuid4().hex[:8]
    async with (
        running_property_slice(root, {**stack.as_env(), "HI_BLOB_DIR": str(blobs)}) as properties,
        running_file_slice(root / "files", stack.as_env(), settings.kafka_bootstrap, suffix) as files,
        properties.client() as property_api,
        files.client() as file_api,
    ):
        yield Apis(property_api, file_api, blobs)


def a_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


async def listing(apis: Apis, owner: str) -> tuple[str, dict[str, str]]:
    made = await apis.properties.post("/api/properties", json=SEED_BODY, headers=bearer(owner))
    assert made.status_code == 201, made.text
    return made.json()["data"]["id"], {CONSISTENCY: made.headers[CONSISTENCY]}


async def add_images(apis: Apis, property_id: str, user: str, content: bytes, **headers: str) -> httpx.Response:
    # The decider's group is shared with any other property slice on the machine; a rebalance can hold
    # a decision past the service's wait (503), and the answer says to retry with the same key.
    key = {"Idempotency-Key": f"images-{uuid.uuid4().hex}"}
    for _ in range(4):
        answer = await apis.properties.post(
            f"/api/properties/{property_id}/images",
            files=[("images", ("room.png", content, "image/png"))],
            headers={**bearer(user), **key, **headers},
        )
        if answer.status_code != 503:
            return answer
    return answer


def a_png() -> bytes:
    n = uuid.uuid4().int
    return png_image(32 + n % 97, 24 + n % 89, (n % 256, (n >> 8) % 256, (n >> 16) % 256))


async def test_a_private_documents_bytes_are_not_served_as_a_listing_image(apis):
    owner = a_user()
    property_id, token = await listing(apis, owner)
    scan = jpeg_with_gps(400, 300, seed=uuid.uuid4().int % 10**9)  # an ID card scan: an image, kind document
    uploaded = await apis.files.post(
        "/api/files/upload",
        files={"file": ("aadhaar.jpg", scan, "application/octet-stream")},
        data={"kind": "document"},
        headers=bearer(owner),
    )
    assert uploaded.status_code == 201, uploaded.text
    sha = uploaded.json()["data"]["sha256"]
    assert apis.stored(sha)
    private = await apis.files.get(
        f"/api/files/{uploaded.json()['data']['id']}", headers={CONSISTENCY: uploaded.headers[CONSISTENCY]}
    )
    assert private.status_code == 401
    for where in (property_id, "prop-zzz"):
        answer = await apis.properties.get(f"/api/properties/{where}/images/{sha}", headers=token)
        assert answer.status_code == 404, where


async def test_a_listing_serves_its_own_images_only(apis):
    owner = a_user()
    first, token = await listing(apis, owner)
    second, _ = await listing(apis, owner)
    added = await add_images(apis, first, owner, a_png(), **token)
    assert added.status_code == 200, added.text
    [image] = added.json()["data"]["images"]
    mine = await apis.properties.get(image["url"], headers={CONSISTENCY: added.headers[CONSISTENCY]})
    assert mine.status_code == 200
    elsewhere = await apis.properties.get(f"/api/properties/{second}/images/{image['sha256']}")
    assert elsewhere.status_code == 404


async def test_a_deleted_listings_images_are_not_served(apis):
    owner = a_user()
    property_id, token = await listing(apis, owner)
    added = await add_images(apis, property_id, owner, a_png(), **token)
    assert added.status_code == 200, added.text
    [image] = added.json()["data"]["images"]
    deleted = await apis.properties.delete(f"/api/properties/{property_id}", headers=bearer(owner))
    assert deleted.status_code == 200, deleted.text
    answer = await apis.properties.get(image["url"], headers={CONSISTENCY: deleted.headers[CONSISTENCY]})
    assert answer.status_code == 404


async def test_an_upload_the_decider_would_refuse_leaves_no_blob(apis):
    owner, stranger = a_user(), a_user()
    property_id, token = await listing(apis, owner)
    before = set(apis.incoming())
    # Not yet in the read model or already there: refused either way, and nothing kept.
    for headers in ({}, token):
        image = a_png()
        refused = await add_images(apis, property_id, stranger, image, **headers)
        assert refused.status_code == 403, refused.text
        assert not apis.stored(hashlib.sha256(image).hexdigest())
    # A listing the read model no longer lists: the decider refuses it, and the bytes go too.
    deleted = await apis.properties.delete(f"/api/properties/{property_id}", headers=bearer(owner))
    assert deleted.status_code == 200, deleted.text
    image = a_png()
    gone = await add_images(apis, property_id, owner, image)
    assert gone.status_code == 404, gone.text
    assert not apis.stored(hashlib.sha256(image).hexdigest())
    assert set(apis.incoming()) <= before
