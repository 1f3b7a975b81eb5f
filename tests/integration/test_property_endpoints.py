"""All ten property endpoints against the real stack: the decider, the projection, Kafka, Postgres,
Redis and OpenSearch, with the seed's creation flow first."""

import struct
import uuid
import zlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.properties import SEED_BODY, bearer, running_property_slice
from tests.support.waiting import eventually

CONSISTENCY = "X-Consistency-Token"


@pytest.fixture(scope="module")
async def api(stack, tmp_path_factory):
    async with running_property_slice(tmp_path_factory.mktemp("property-slice"), stack.as_env()) as slice_:
        async with slice_.client() as client:
            yield client


def a_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def create(api, owner: str, **overrides):
    answer = await api.post("/api/properties", json={**SEED_BODY, **overrides}, headers=bearer(owner))
    assert answer.status_code == 201, answer.text
    return answer


async def test_the_seed_request_gets_the_seed_response(api):
    headers = {
        **bearer("user-456"),
        "Content-Type": "application/json",
        "X-User-Id": "user-456",
        "X-Session-Id": "session-abc",
    }
    answer = await api.post("/api/properties", json=SEED_BODY, headers=headers)
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"success", "message", "data"}
    assert body["success"] is True and body["message"] == "Property created"
    assert set(body["data"]) == {"id", "title", "createdAt"}
    assert body["data"]["id"].startswith("prop-") and body["data"]["title"] == "3BHK Apartment"
    assert body["data"]["createdAt"].endswith("Z")
    assert answer.headers["Location"] == f"/api/properties/{body['data']['id']}"
    assert answer.headers[CONSISTENCY].startswith("properties:")


async def test_a_hundred_creates_are_each_read_back_at_once_with_the_token(api):
    owner = a_user()
    misses = []
    for n in range(100):
        made = await create(api, owner, title=f"Flat {n} in Kondapur", location="Kondapur")
        read = await api.get(made.headers["Location"], headers={CONSISTENCY: made.headers[CONSISTENCY]})
        if read.status_code != 200 or read.json()["data"]["title"] != f"Flat {n} in Kondapur":
            misses.append((n, read.status_code))
    assert misses == []


async def test_details_carry_the_version_as_etag(api):
    made = await create(api, a_user())
    read = await api.get(made.headers["Location"], headers={CONSISTENCY: made.headers[CONSISTENCY]})
    assert read.headers["ETag"] == '"1"'
    data = read.json()["data"]
    assert (data["price"], data["propertyType"], data["viewCount"], data["images"]) == (9500000, "APARTMENT", 0, [])


def details_reads(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            labels = sample.labels
            if (sample.name, labels.get("route"), labels.get("method"), labels.get("status")) == (
                "hi_http_requests_total",
                "/api/properties/{property_id}",
                "GET",
                "200",
            ):
                return sample.value
    return 0.0


async def test_an_anonymous_read_answers_as_the_route_with_its_full_rules_does(api):
    """A plain anonymous GET by id is answered before FastAPI's router (api/common/fast_reads.py): the
    same answer as the route's, counted under the route's template, and a deleted listing is still 404."""
    owner = a_user()
    made = await create(api, owner, title="Duplex in Narsingi", location="Narsingi")
    where, token = made.headers["Location"], {CONSISTENCY: made.headers[CONSISTENCY]}
    full = await api.get(where, headers=token)
    counted = details_reads((await api.get("/metrics")).text)
    plain = await api.get(where)
    assert (plain.status_code, plain.json(), plain.headers["ETag"]) == (full.status_code, full.json(), '"1"')
    assert plain.headers["Content-Type"] == full.headers["Content-Type"] == "application/json"
    assert plain.headers["X-Correlation-Id"].startswith("corr-")
    assert details_reads((await api.get("/metrics")).text) == counted + 1
    # With a query string, the route answers it, the same way.
    assert (await api.get(where, params={"utm": "x"})).json() == full.json()
    too_long = await api.get(f"/api/properties/prop-{'x' * 65}")
    assert too_long.status_code == 422 and too_long.json()["success"] is False
    deleted = await api.delete(where, headers=bearer(owner))
    assert (await api.get(where, headers={CONSISTENCY: deleted.headers[CONSISTENCY]})).status_code == 404
    gone = await api.get(where)
    assert gone.status_code == 404 and gone.json()["message"] == f"Property {where.rsplit('/', 1)[1]} not found"


async def test_update_then_read_shows_the_change_and_a_stale_if_match_conflicts(api):
    owner = a_user()
    made = await create(api, owner)
    where = made.headers["Location"]
    updated = await api.put(where, json={"price": 8900000}, headers={**bearer(owner), "If-Match": '"1"'})
    assert updated.status_code == 200, updated.text
    assert updated.headers["ETag"] == '"2"'
    read = await api.get(where, headers={CONSISTENCY: updated.headers[CONSISTENCY]})
    assert read.json()["data"]["price"] == 8900000 and read.headers["ETag"] == '"2"'
    stale = await api.put(where, json={"price": 1}, headers={**bearer(owner), "If-Match": '"1"'})
    assert stale.status_code == 409 and stale.json()["success"] is False


async def test_only_the_owner_or_an_admin_changes_a_listing(api):
    owner = a_user()
    where = (await create(api, owner)).headers["Location"]
    assert (await api.put(where, json={"price": 1}, headers=bearer(a_user()))).status_code == 403
    assert (await api.delete(where, headers=bearer(a_user()))).status_code == 403
    admin = await api.put(where, json={"featured": True}, headers=bearer("user-admin", "ADMIN"))
    assert admin.status_code == 200, admin.text


async def test_commands_need_a_valid_token_and_a_matching_user_header(api):
    assert (await api.post("/api/properties", json=SEED_BODY)).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await api.post("/api/properties", json=SEED_BODY, headers=bad)).status_code == 401
    other = {**bearer("user-1"), "X-User-Id": "user-2"}
    answer = await api.post("/api/properties", json=SEED_BODY, headers=other)
    assert answer.status_code == 403 and answer.json()["errors"][0]["field"] == "X-User-Id"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"propertyType": "CASTLE"}, "propertyType"),
        ({"price": -1}, "price"),
        ({"price": 10**19}, "price"),  # beyond Postgres bigint: accepted, it could never be stored
        ({"title": "ab"}, "title"),
        ({"title": "3BHK\x00Gachibowli"}, "title"),  # Postgres text cannot hold a NUL
        ({"bedrooms": 51}, "bedrooms"),
        ({"location": ""}, "location"),
        ({"amenities": [f"amenity {n}" for n in range(51)]}, "amenities"),
        ({"amenities": ["pool", "x" * 101]}, "amenities[1]"),
        ({"attributes": {f"k{n}": n for n in range(51)}}, "attributes"),
        ({"attributes": {"k" * 65: 1}}, f"attributes.{'k' * 65}.[Key]"),
        ({"attributes": {"notes": "x" * 17_000}}, "attributes"),
    ],
)
async def test_invalid_input_is_422_naming_the_field(api, change, field):
    answer = await api.post("/api/properties", json={**SEED_BODY, **change}, headers=bearer(a_user()))
    assert answer.status_code == 422
    assert field in [error["field"] for error in answer.json()["errors"]]


async def test_invalid_update_is_422_naming_the_field(api):
    owner = a_user()
    where = (await create(api, owner)).headers["Location"]
    for price in (0, 10**19):
        answer = await api.put(where, json={"price": price}, headers=bearer(owner))
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "price"
    for change, field in (
        ({"amenities": ["gym"] * 51}, "amenities"),
        ({"attributes": {"notes": "x" * 17_000}}, "attributes"),
    ):
        answer = await api.put(where, json=change, headers=bearer(owner))
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == field


async def test_unknown_properties_are_404_everywhere(api):
    missing = "/api/properties/prop-doesnotexist"
    assert (await api.get(missing)).status_code == 404
    assert (await api.put(missing, json={"price": 1}, headers=bearer(a_user()))).status_code == 404
    assert (await api.delete(missing, headers=bearer(a_user()))).status_code == 404
    assert (await api.post(f"{missing}/view")).status_code == 404
    assert (await api.get("/api/properties/similar/prop-doesnotexist")).status_code == 404


async def test_delete_delists_everywhere(api):
    owner = a_user()
    made = await create(api, owner, location="Kokapet", propertyType="VILLA")
    where = made.headers["Location"]
    deleted = await api.delete(where, headers=bearer(owner))
    assert deleted.status_code == 200
    token = {CONSISTENCY: deleted.headers[CONSISTENCY]}
    assert (await api.get(where, headers=token)).status_code == 404
    mine = await api.get(f"/api/properties/user/{owner}", headers=token)
    assert mine.json()["data"]["items"] == []
    again = await api.delete(where, headers=bearer(owner))
    assert again.status_code == 404


async def test_views_are_counted_anonymous_or_not(api):
    made = await create(api, a_user())
    where = made.headers["Location"]
    token = {CONSISTENCY: made.headers[CONSISTENCY]}
    anonymous = await api.post(f"{where}/view", headers=token)
    assert anonymous.status_code == 202
    signed_in = await api.post(f"{where}/view", headers={**bearer(a_user()), **token})
    assert signed_in.status_code == 202

    async def views():
        return (await api.get(where)).json()["data"]["viewCount"]

    assert await eventually(views, until=lambda count: count >= 2, within=15) == 2


async def test_a_users_listings_are_newest_first_with_cursor_paging(api):
    owner = a_user()
    made = [await create(api, owner, title=f"Listing number {n}") for n in range(5)]
    token = {CONSISTENCY: made[-1].headers[CONSISTENCY]}
    first = (await api.get(f"/api/properties/user/{owner}?limit=3", headers=token)).json()["data"]
    second = (await api.get(f"/api/properties/user/{owner}?limit=3&cursor={first['nextCursor']}")).json()["data"]
    titles = [item["title"] for item in first["items"] + second["items"]]
    assert titles == [f"Listing number {n}" for n in range(4, -1, -1)]
    assert second["nextCursor"] is None
    assert (await api.get(f"/api/properties/user/{owner}?limit=101")).status_code == 422
    assert (await api.get(f"/api/properties/user/{owner}?cursor=garbage!")).status_code == 400


async def test_recent_filters_by_location_and_type(api):
    locality = f"Test-{uuid.uuid4().hex[:6]}"
    owner = a_user()
    await create(api, owner, location=locality, propertyType="PLOT")
    made = await create(api, owner, location=locality, propertyType="VILLA")
    token = {CONSISTENCY: made.headers[CONSISTENCY]}
    villas = await api.get(f"/api/properties/recent?location={locality}&propertyType=VILLA", headers=token)
    assert [item["propertyType"] for item in villas.json()["data"]["items"]] == ["VILLA"]
    both = await api.get(f"/api/properties/recent?location={locality}", headers=token)
    assert len(both.json()["data"]["items"]) == 2
    assert (await api.get("/api/properties/recent?propertyType=CASTLE")).status_code == 422


async def test_featured_lists_admin_flagged_listings_first(api):
    owner = a_user()
    where = (await create(api, owner, title="The featured penthouse", propertyType="PENTHOUSE")).headers["Location"]
    flagged = await api.put(where, json={"featured": True}, headers=bearer("user-admin", "ADMIN"))
    assert flagged.status_code == 200
    await api.get(where, headers={CONSISTENCY: flagged.headers[CONSISTENCY]})

    async def featured():
        return (await api.get("/api/properties/featured")).json()["data"]["items"]

    items = await eventually(featured, until=lambda items: any(where.endswith(i["id"]) for i in items), within=15)
    assert items[0]["featured"] is True
    flagged_ids = [item["id"] for item in items if item["featured"]]
    assert items[: len(flagged_ids)] == [item for item in items if item["featured"]], "flagged ones come first"


async def test_similar_finds_the_same_kind_of_home_nearby_but_not_itself_or_delisted_ones(api):
    owner = a_user()
    locality = f"Similar-{uuid.uuid4().hex[:6]}"
    this = await create(api, owner, location=locality, price=9000000, bedrooms=3)
    alike = await create(api, owner, location=locality, price=9200000, bedrooms=3)
    gone = await create(api, owner, location=locality, price=9100000, bedrooms=3)
    deleted = await api.delete(gone.headers["Location"], headers=bearer(owner))
    this_id = this.json()["data"]["id"]
    answer = await api.get(f"/api/properties/similar/{this_id}", headers={CONSISTENCY: deleted.headers[CONSISTENCY]})
    assert answer.status_code == 200
    ids = [item["id"] for item in answer.json()["data"]["items"]]
    assert alike.json()["data"]["id"] in ids
    assert this_id not in ids and gone.json()["data"]["id"] not in ids


async def test_images_are_checked_stored_and_listed(api):
    owner = a_user()
    where = (await create(api, owner)).headers["Location"]
    uploaded = await api.post(
        f"{where}/images", files=[("images", ("a.png", png(), "image/png"))], headers=bearer(owner)
    )
    assert uploaded.status_code == 200, uploaded.text
    read = await api.get(where, headers={CONSISTENCY: uploaded.headers[CONSISTENCY]})
    [image] = read.json()["data"]["images"]
    served = await api.get(image["url"])
    assert served.status_code == 200 and served.content == png() and served.headers["content-type"] == "image/png"

    text = await api.post(
        f"{where}/images", files=[("images", ("a.png", b"just text", "image/png"))], headers=bearer(owner)
    )
    assert text.status_code == 415 and text.json()["errors"][0]["field"] == "images[0]"
    huge = png() + b"\x00" * (10 * 1024 * 1024)
    too_big = await api.post(
        f"{where}/images", files=[("images", ("big.png", huge, "image/png"))], headers=bearer(owner)
    )
    assert too_big.status_code == 413
    many = [("images", (f"{n}.png", png(n + 1, 1), "image/png")) for n in range(21)]
    assert (await api.post(f"{where}/images", files=many, headers=bearer(owner))).status_code == 422
    stranger = await api.post(
        f"{where}/images", files=[("images", ("b.png", png(3, 3), "image/png"))], headers=bearer(a_user())
    )
    assert stranger.status_code == 403


async def test_an_idempotency_key_makes_a_retry_return_the_first_answer(api):
    owner = a_user()
    key = {"Idempotency-Key": f"create-{uuid.uuid4().hex}"}
    first = await api.post("/api/properties", json=SEED_BODY, headers={**bearer(owner), **key})
    retry = await api.post("/api/properties", json=SEED_BODY, headers={**bearer(owner), **key})
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json() and retry.headers["Location"] == first.headers["Location"]
    assert retry.headers["Idempotent-Replay"] == "true"
    listed = await api.get(f"/api/properties/user/{owner}", headers={CONSISTENCY: first.headers[CONSISTENCY]})
    assert len(listed.json()["data"]["items"]) == 1
    other_body = await api.post("/api/properties", json={**SEED_BODY, "price": 1}, headers={**bearer(owner), **key})
    assert other_body.status_code == 422 and other_body.json()["errors"][0]["field"] == "Idempotency-Key"
