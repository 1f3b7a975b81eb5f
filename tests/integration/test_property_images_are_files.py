"""A listing's images uploaded through the property service are files of the file service too: one
blob store, announced as `file.uploaded` once the property decider accepts them."""

import hashlib
import uuid

from tests.support.files import jpeg_with_gps, running_file_slice
from tests.support.properties import SEED_BODY, bearer, running_property_slice
from tests.support.waiting import eventually


async def test_images_of_a_listing_are_listed_and_served_by_the_file_service(stack, settings, tmp_path):
    owner = f"user-{uuid.uuid4().hex[:12]}"
    photo = jpeg_with_gps(800, 600, seed=uuid.uuid4().int % 10**9)
    blobs = tmp_path / "file-slice" / "blobs"
    env = {**stack.as_env(), "HI_BLOB_DIR": str(blobs)}
    (tmp_path / "file-slice").mkdir()
    async with (
        running_property_slice(tmp_path, env) as properties,
        running_file_slice(
            tmp_path / "file-slice", stack.as_env(), settings.kafka_bootstrap, uuid.uuid4().hex[:8]
        ) as files,
        properties.client() as property_api,
        files.client() as file_api,
    ):
        made = await property_api.post("/api/properties", json=SEED_BODY, headers=bearer(owner))
        assert made.status_code == 201, made.text
        property_id = made.json()["data"]["id"]
        # The decider's group is shared with any other property slice running on the machine; a rebalance
        # can hold a decision past the service's wait (503), and the answer says to retry with the same key.
        key = {"Idempotency-Key": f"images-{uuid.uuid4().hex}"}
        for _ in range(4):
            added = await property_api.post(
                f"/api/properties/{property_id}/images",
                files=[("images", ("terrace.jpg", photo, "image/jpeg"))],
                headers={**bearer(owner), **key},
            )
            if added.status_code != 503:
                break
        assert added.status_code == 200, added.text

        async def listed():
            answer = await file_api.get(f"/api/files/property/{property_id}")
            return answer.json()["data"]["items"] if answer.status_code == 200 else None

        items = await eventually(listed, lambda found: bool(found), within=60)
        [image] = items
        assert (image["kind"], image["filename"], image["ownerId"]) == ("photo", "terrace.jpg", owner)
        assert image["sha256"] == hashlib.sha256(photo).hexdigest()
        served = await file_api.get(image["url"])
        assert served.status_code == 200 and served.content == photo
        # The property service serves the very same blob.
        [listed_image] = added.json()["data"]["images"]
        again = await property_api.get(listed_image["url"])
        assert again.status_code == 200 and again.headers["etag"] == served.headers["etag"]
