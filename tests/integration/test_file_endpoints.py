"""All six file endpoints against the real stack: the file service, the file projection and the image
optimiser workers, Kafka, Postgres and Redis; listings come from the real property projection."""

import asyncio
import hashlib
import io
import os
import uuid
import zipfile

import orjson
import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from PIL import Image

from api.common.auth import issue_access_token
from schemas.codec import encode
from schemas.envelope import new_event
from schemas.personal import FILENAME, UnreadablePersonalData, unseal
from schemas.topics import DEAD_LETTERS, DLQ_CONSUMER_HEADER, DLQ_ERROR_HEADER, PROPERTIES, PROPERTY_VIEWS, USERS
from tests.support.files import (
    GPS_IFD,
    bomb_png,
    jpeg_with_gps,
    pdf_document,
    png_image,
    running_file_slice,
    webp_image,
)
from tests.support.property_projection import created, produce, projection_worker, start_group_at_end
from tests.support.waiting import eventually

CONSISTENCY = "X-Consistency-Token"
IMAGE_LIMIT = 2_000_000


def bearer(user_id: str, role: str = "USER") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(user_id, role)}"}


def a_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
async def slice_(stack, settings, tmp_path_factory):
    logs = tmp_path_factory.mktemp("file-slice")
    suffix = uuid.uuid4().hex[:8]
    # The property projection under its own group, so listings produced here exist in Postgres.
    group = f"property-projection-files-{suffix}"
    await start_group_at_end(settings.kafka_bootstrap, group, (PROPERTIES.name, PROPERTY_VIEWS.name))
    properties = projection_worker(group, logs)
    properties.start()
    try:
        async with running_file_slice(
            logs,
            stack.as_env(),
            settings.kafka_bootstrap,
            f"it-{suffix}",
            HI_FILE_MAX_IMAGE_BYTES=str(IMAGE_LIMIT),
            HI_FILE_GC_INTERVAL_SECONDS="1",
            HI_FILE_GC_GRACE_SECONDS="15",
        ) as running:
            yield running
    finally:
        properties.stop()


@pytest.fixture(scope="module")
async def api(slice_):
    async with slice_.client() as client:
        yield client


@pytest.fixture(scope="module")
async def listings(producer, pg_module, run_id):
    """Make listings through the real property projection: {property id: owner}."""
    made: dict[str, str] = {}

    async def make(owner: str) -> str:
        property_id = f"prop-{uuid.uuid4().hex[:16]}"
        await produce(producer, created(property_id, owner, run_id))

        async def row():
            cursor = await pg_module.execute("SELECT owner_id FROM properties WHERE id = %s", (property_id,))
            return await cursor.fetchone()

        await eventually(row, lambda found: found is not None, within=60)
        made[property_id] = owner
        return property_id

    return make


@pytest.fixture(scope="module")
async def pg_module(settings):
    import psycopg

    async with await psycopg.AsyncConnection.connect(settings.postgres_dsn, autocommit=True) as conn:
        yield conn


async def upload(api, owner, content, name="photo.jpg", **fields):
    form = {k: v for k, v in fields.items() if v is not None}
    return await api.post(
        "/api/files/upload",
        files={"file": (name, content, "application/octet-stream")},
        data=form,
        headers=bearer(owner),
    )


async def uploaded(api, owner, content, name="photo.jpg", **fields):
    answer = await upload(api, owner, content, name, **fields)
    assert answer.status_code == 201, answer.text
    return answer


# ---- upload ----


async def test_an_upload_is_stored_by_its_bytes_and_downloaded_whole(api):
    owner = a_user()
    photo = jpeg_with_gps(640, 480, seed=1)
    answer = await uploaded(api, owner, photo, "Gachibowli flat.jpg")
    body = answer.json()
    data = body["data"]
    assert body["success"] is True and answer.headers["Location"] == f"/api/files/{data['id']}"
    assert data["id"].startswith("file-") and data["sha256"] == hashlib.sha256(photo).hexdigest()
    assert (data["contentType"], data["kind"], data["sizeBytes"], data["ownerId"]) == (
        "image/jpeg",
        "photo",
        len(photo),
        owner,
    )
    assert answer.headers[CONSISTENCY].startswith("files:")

    read = await api.get(answer.headers["Location"], headers={CONSISTENCY: answer.headers[CONSISTENCY]})
    assert read.status_code == 200 and read.content == photo
    assert read.headers["content-type"] == "image/jpeg"
    assert read.headers["content-length"] == str(len(photo))
    assert read.headers["etag"] == f'"{data["sha256"]}"'
    assert read.headers["content-disposition"].startswith('inline; filename="Gachibowli flat.jpg"')
    assert read.headers["x-content-type-options"] == "nosniff"
    head = await api.head(answer.headers["Location"])
    assert head.status_code == 200 and head.headers["content-length"] == str(len(photo)) and head.content == b""


async def test_the_type_comes_from_the_bytes_not_the_name(api):
    owner = a_user()
    png = await uploaded(api, owner, png_image(), "looks-like.jpg")
    assert png.json()["data"]["contentType"] == "image/png"
    webp = await uploaded(api, owner, webp_image(), "x.png")
    assert webp.json()["data"]["contentType"] == "image/webp"
    pdf = await uploaded(api, owner, pdf_document(), "deed.jpg")
    assert (pdf.json()["data"]["contentType"], pdf.json()["data"]["kind"]) == ("application/pdf", "document")


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (b"just some text, not an image", "notes.jpg"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "anim.gif"),
        (b"<html><script>alert(1)</script></html>" * 3, "page.png"),
    ],
)
async def test_other_types_are_415_naming_the_field(api, content, name):
    answer = await upload(api, a_user(), content, name)
    assert answer.status_code == 415, answer.text
    assert answer.json()["errors"][0]["field"] == "file"


async def test_polyglots_are_refused(api):
    owner = a_user()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as jar:
        jar.writestr("Payload.class", b"\xca\xfe\xba\xbe" + os.urandom(64))
    jpeg_with_jar = jpeg_with_gps(120, 90, seed=2) + archive.getvalue()
    answer = await upload(api, owner, jpeg_with_jar, "gifar.jpg")
    assert answer.status_code == 415 and "ZIP" in answer.json()["message"]
    image_and_pdf = b"\xff\xd8\xff\xe0" + b"\x00" * 20 + b"%PDF-1.4 hidden" + jpeg_with_gps(64, 48)[4:]
    assert (await upload(api, owner, image_and_pdf, "both.jpg")).status_code == 415
    html_in_png = png_image()[:33] + b"<script>alert(1)</script>" + png_image()[33:]
    assert (await upload(api, owner, html_in_png, "xss.png")).status_code == 415


async def test_truncated_images_and_decompression_bombs_are_422(api):
    owner = a_user()
    truncated = await upload(api, owner, png_image(200, 200)[:-30], "cut.png")
    assert truncated.status_code == 422 and "truncated" in truncated.json()["message"]
    bomb = await upload(api, owner, bomb_png(), "bomb.png")
    assert bomb.status_code == 422 and "decompression bomb" in bomb.json()["message"]
    empty = await upload(api, owner, b"", "empty.jpg")
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "file"


async def test_an_image_over_its_limit_is_413(api):
    big = jpeg_with_gps(64, 48) + b"\x00" * IMAGE_LIMIT
    answer = await upload(api, a_user(), big, "huge.jpg")
    assert answer.status_code == 413 and answer.json()["errors"][0]["field"] == "file"


async def test_a_declared_length_over_the_limit_is_413_before_any_byte_is_read(slice_):
    """A raw request claiming 300 MB and sending none of it: answered at once from its headers."""
    token = issue_access_token(a_user(), "USER")
    request = (
        f"POST /api/files/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 314572800\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", slice_.service.port)
    try:
        writer.write(request.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert status_line.split()[1] == b"413"


async def test_uploads_need_a_valid_token_and_a_matching_user_header(api):
    files = {"file": ("a.png", png_image(), "image/png")}
    assert (await api.post("/api/files/upload", files=files)).status_code == 401
    assert (await api.post("/api/files/upload", files=files, headers={"Authorization": "Bearer x"})).status_code == 401
    other = await api.post("/api/files/upload", files=files, headers={**bearer("user-1"), "X-User-Id": "user-2"})
    assert other.status_code == 403 and other.json()["errors"][0]["field"] == "X-User-Id"


async def test_upload_input_errors_are_422_naming_the_field(api):
    owner = a_user()
    no_file = await api.post("/api/files/upload", files=[("kind", (None, "photo"))], headers=bearer(owner))
    assert no_file.status_code == 422 and no_file.json()["errors"][0]["field"] == "file"
    bad_kind = await upload(api, owner, png_image(), kind="selfie")
    assert bad_kind.status_code == 422 and bad_kind.json()["errors"][0]["field"] == "kind"
    bad_property = await upload(api, owner, png_image(), propertyId="not-a-property")
    assert bad_property.status_code == 422 and bad_property.json()["errors"][0]["field"] == "propertyId"
    pdf_photo = await upload(api, owner, pdf_document(), "deed.pdf", kind="photo")
    assert pdf_photo.status_code == 415
    not_multipart = await api.post("/api/files/upload", content=png_image(), headers=bearer(owner))
    assert not_multipart.status_code == 415 and not_multipart.json()["errors"][0]["field"] == "Content-Type"


async def test_part_names_past_latin_1_are_read_as_utf8(api):
    """RFC 7578 lets a form name be UTF-8: a file under a name we do not take is 422 naming it, and a field
    we do not know is left aside (the fuzzer once met a 500 here)."""
    owner, boundary = a_user(), "hyderabad-boundary"

    def part(name: str, content: bytes, filename: str | None = None) -> bytes:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"

    def body(*parts: bytes) -> bytes:
        return b"".join(parts) + f"--{boundary}--\r\n".encode()

    headers = {**bearer(owner), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    photo = body(part("写真", png_image(), "a.png"))
    refused = await api.post("/api/files/upload", content=photo, headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "写真"
    noted = body(part("メモ \U00102782", b"2BHK"), part("file", png_image(), "a.png"))
    stored = await api.post("/api/files/upload", content=noted, headers=headers)
    assert stored.status_code == 201, stored.text


async def test_a_listing_takes_files_only_from_its_owner(api, listings):
    owner = a_user()
    property_id = await listings(owner)
    mine = await upload(api, owner, png_image(), propertyId=property_id, kind="floor_plan")
    assert mine.status_code == 201 and mine.json()["data"]["propertyId"] == property_id
    stranger = await upload(api, a_user(), png_image(), propertyId=property_id)
    assert stranger.status_code == 403
    admin = await upload(api, "user-admin", png_image(), propertyId=property_id)
    assert admin.status_code == 403  # a USER token named user-admin is not an admin
    real_admin = await api.post(
        "/api/files/upload",
        files={"file": ("a.png", png_image(), "image/png")},
        data={"propertyId": property_id},
        headers=bearer(a_user(), "ADMIN"),
    )
    assert real_admin.status_code == 201
    missing = await upload(api, owner, png_image(), propertyId="prop-doesnotexist")
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "propertyId"


async def test_a_registered_uploaders_file_names_travel_sealed_with_their_key(api, pg, settings):
    """People name files after themselves; the name in `file.uploaded` (kept forever) is sealed with the
    uploader's key, and the read model and the download have it as uploaded. (The erasure test shows
    the name gone everywhere once the account is closed.)"""
    owner = a_user()
    key = os.urandom(32)
    await pg.execute("INSERT INTO user_keys (user_id, key) VALUES (%s, %s)", (owner, key))
    name = f"Priya Reddy {uuid.uuid4().hex[:6]} sale deed.pdf"
    made = await upload(api, owner, pdf_document(), name, kind="document")
    assert made.status_code == 201, made.text
    assert made.json()["data"]["filename"] == name, "the answer says the name as sent"
    topic, partition, offset = made.headers[CONSISTENCY].split(":")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        where = TopicPartition(topic, int(partition))
        consumer.assign([where])
        consumer.seek(where, int(offset))
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert name.encode() not in record.value and b"Priya" not in record.value
    sealed = orjson.loads(record.value)["data"]["filename"]
    assert unseal(key, owner, FILENAME, sealed) == name
    token = {CONSISTENCY: made.headers[CONSISTENCY]}
    download = await api.get(made.headers["Location"], headers={**bearer(owner), **token})
    assert download.status_code == 200 and "Priya" in download.headers["content-disposition"], download.headers
    with pytest.raises(UnreadablePersonalData):  # bound to its owner: another user's key cannot open it
        unseal(key, a_user(), FILENAME, sealed)
    await pg.execute("DELETE FROM user_keys WHERE user_id = %s", (owner,))


async def test_an_idempotency_key_makes_a_retried_upload_return_the_first_answer(api):
    owner = a_user()
    key = {"Idempotency-Key": f"upload-{uuid.uuid4().hex}"}
    files = {"file": ("a.webp", webp_image(90, 60), "image/webp")}
    first = await api.post("/api/files/upload", files=files, headers={**bearer(owner), **key})
    retry = await api.post("/api/files/upload", files=files, headers={**bearer(owner), **key})
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json() and retry.headers["Idempotent-Replay"] == "true"


# ---- download ----


async def test_ranges_conditional_gets_and_416(api):
    content = pdf_document(5000)
    made = await uploaded(api, a_user(), content, "plan.pdf", kind="floor_plan")
    where, token = made.headers["Location"], {CONSISTENCY: made.headers[CONSISTENCY]}
    etag = (await api.get(where, headers=token)).headers["etag"]

    part = await api.get(where, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(content)}" and part.headers["content-length"] == "100"
    tail = await api.get(where, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == content[-10:]
    rest = await api.get(where, headers={"Range": f"bytes={len(content) - 5}-"})
    assert rest.status_code == 206 and rest.content == content[-5:]
    past = await api.get(where, headers={"Range": f"bytes={len(content)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(content)}"
    assert past.json()["errors"][0]["field"] == "Range"
    several = await api.get(where, headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.content == content
    stale = await api.get(where, headers={"Range": "bytes=0-9", "If-Range": '"another"'})
    assert stale.status_code == 200 and stale.content == content

    unchanged = await api.get(where, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
    assert (await api.get(where, headers={"If-None-Match": f'"x", W/{etag}'})).status_code == 304
    assert (await api.get(where, headers={"If-None-Match": '"something-else"'})).status_code == 200


async def test_unknown_files_are_404_and_bad_ids_422(api):
    assert (await api.get("/api/files/file-doesnotexist")).status_code == 404
    bad = await api.get("/api/files/not-a-file-id")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "fileId"
    made = await uploaded(api, a_user(), png_image(), "p.png")
    where, token = made.headers["Location"], {CONSISTENCY: made.headers[CONSISTENCY]}
    assert (await api.get(f"{where}?variant=huge", headers=token)).status_code == 422
    no_variant = await api.get(f"{where}?variant=768.webp", headers=token)
    assert no_variant.status_code == 404 and "optimize" in no_variant.json()["message"]


async def test_private_documents_only_for_their_owner_the_listing_owner_and_admins(api, listings):
    listing_owner, uploader = a_user(), a_user()
    property_id = await listings(listing_owner)
    # An admin attaches the sale deed to the listing; the uploader is the admin.
    deed = await api.post(
        "/api/files/upload",
        files={"file": ("sale deed.pdf", pdf_document(), "application/pdf")},
        data={"propertyId": property_id, "kind": "document"},
        headers=bearer(uploader, "ADMIN"),
    )
    assert deed.status_code == 201, deed.text
    where, token = deed.headers["Location"], {CONSISTENCY: deed.headers[CONSISTENCY]}
    assert (await api.get(where, headers=token)).status_code == 401
    assert (await api.get(where, headers={**token, **bearer(a_user())})).status_code == 403
    as_uploader = await api.get(where, headers={**token, **bearer(uploader)})
    assert as_uploader.status_code == 200 and as_uploader.headers["content-disposition"].startswith("attachment")
    assert as_uploader.headers["cache-control"].startswith("private")
    assert (await api.get(where, headers={**token, **bearer(listing_owner)})).status_code == 200
    assert (await api.get(where, headers={**token, **bearer(a_user(), "ADMIN")})).status_code == 200


# ---- delete ----


async def test_delete_is_for_the_owner_or_an_admin_and_removes_the_file_everywhere(api, slice_, listings):
    owner = a_user()
    property_id = await listings(owner)
    # Bytes nothing else stores (this run or any other), so nothing else refers to them.
    content = png_image(97, 31, tuple(os.urandom(3)))
    made = await uploaded(api, owner, content, "gone.png", propertyId=property_id)
    where, token = made.headers["Location"], {CONSISTENCY: made.headers[CONSISTENCY]}
    file_id, sha = made.json()["data"]["id"], made.json()["data"]["sha256"]
    assert (await api.get(where, headers=token)).status_code == 200

    assert (await api.delete(where)).status_code == 401
    assert (await api.delete(where, headers=bearer(a_user()))).status_code == 403
    assert (await api.delete("/api/files/file-doesnotexist", headers=bearer(owner))).status_code == 404
    deleted = await api.delete(where, headers=bearer(owner))
    assert deleted.status_code == 200 and deleted.json()["data"]["id"] == file_id
    gone = {CONSISTENCY: deleted.headers[CONSISTENCY]}
    assert (await api.get(where, headers=gone)).status_code == 404
    listed = await api.get(f"/api/files/property/{property_id}", headers=gone)
    assert file_id not in [item["id"] for item in listed.json()["data"]["items"]]
    assert (await api.delete(where, headers={**bearer(owner), **gone})).status_code == 404

    blob = slice_.blob_dir / "sha256" / sha[:2] / sha
    assert blob.exists()
    # The collector runs every second here, with a 15 s grace since the bytes were last stored.
    await eventually(lambda: asyncio.sleep(0, blob.exists()), lambda exists: not exists, within=60, every=1)


async def test_an_admin_may_delete_any_file(api):
    made = await uploaded(api, a_user(), png_image(), "x.png")
    token = {CONSISTENCY: made.headers[CONSISTENCY]}
    answer = await api.delete(made.headers["Location"], headers={**bearer(a_user(), "ADMIN"), **token})
    assert answer.status_code == 200


# ---- bulk ----


async def test_bulk_stores_the_good_files_and_gives_the_bad_their_own_errors(api, listings):
    owner = a_user()
    property_id = await listings(owner)
    parts = [
        ("files", ("one.png", png_image(10, 10), "image/png")),
        ("files", ("oversized.jpg", jpeg_with_gps(64, 48) + b"\x00" * IMAGE_LIMIT, "image/jpeg")),
        ("files", ("fake.jpg", b"MZ\x90\x00 this is a windows executable", "image/jpeg")),
        ("files", ("two.webp", webp_image(12, 12), "image/webp")),
        ("files", ("deed.pdf", pdf_document(), "application/pdf")),
    ]
    answer = await api.post("/api/files/bulk", files=parts, data={"propertyId": property_id}, headers=bearer(owner))
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert (data["stored"], data["refused"]) == (3, 2)
    statuses = [(item["index"], item["filename"], item["status"]) for item in data["items"]]
    assert statuses == [
        (0, "one.png", 201),
        (1, "oversized.jpg", 413),
        (2, "fake.jpg", 415),
        (3, "two.webp", 201),
        (4, "deed.pdf", 201),
    ]
    assert data["items"][1]["errors"][0]["field"] == "files[1]"
    assert data["items"][2]["errors"][0]["field"] == "files[2]"
    token = {CONSISTENCY: answer.headers[CONSISTENCY]}
    for item in data["items"]:
        if item["status"] == 201:
            assert item["file"]["propertyId"] == property_id
            assert (await api.get(item["file"]["url"], headers={**token, **bearer(owner)})).status_code == 200


async def test_a_bulk_upload_retried_with_its_idempotency_key_stores_nothing_twice(api, pg):
    owner = a_user()
    key = {"Idempotency-Key": f"bulk-{uuid.uuid4().hex}"}
    parts = [
        ("files", ("one.png", png_image(11, 11), "image/png")),
        ("files", ("fake.jpg", b"MZ\x90\x00 this is a windows executable", "image/jpeg")),
        ("files", ("two.webp", webp_image(13, 13), "image/webp")),
    ]
    first = await api.post("/api/files/bulk", files=parts, headers={**bearer(owner), **key})
    retry = await api.post("/api/files/bulk", files=parts, headers={**bearer(owner), **key})
    assert first.status_code == retry.status_code == 200, first.text
    assert retry.json() == first.json() and retry.headers["Idempotent-Replay"] == "true"
    other = await api.post("/api/files/bulk", files=parts[:1], headers={**bearer(owner), **key})
    assert other.status_code == 422, "the same key for another request is refused"
    ids = sorted(item["file"]["id"] for item in first.json()["data"]["items"] if item["status"] == 201)
    assert len(ids) == 2
    for file_id in ids:  # read through the service with the first answer's token: projected, once
        found = await api.get(
            f"/api/files/{file_id}", headers={CONSISTENCY: first.headers[CONSISTENCY], **bearer(owner)}
        )
        assert found.status_code == 200, found.text

    async def owned() -> list[str]:
        cursor = await pg.execute("SELECT id FROM files WHERE owner_id = %s ORDER BY id", (owner,))
        return [row[0] for row in await cursor.fetchall()]

    assert await owned() == ids, "two files stored, not four"


async def test_bulk_refuses_what_is_wrong_with_the_request_itself(api, listings):
    owner = a_user()
    one = [("files", ("a.png", png_image(), "image/png"))]
    assert (await api.post("/api/files/bulk", files=one)).status_code == 401
    too_many = [("files", (f"{n}.png", png_image(n + 1, 1), "image/png")) for n in range(21)]
    many = await api.post("/api/files/bulk", files=too_many, headers=bearer(owner))
    assert many.status_code == 422 and many.json()["errors"][0]["field"] == "files"
    nothing = await api.post("/api/files/bulk", files=[("kind", (None, "photo"))], headers=bearer(owner))
    assert nothing.status_code == 422 and nothing.json()["errors"][0]["field"] == "files"
    wrong_field = await api.post(
        "/api/files/bulk", files=[("file", ("a.png", png_image(), "image/png"))], headers=bearer(owner)
    )
    assert wrong_field.status_code == 422
    property_id = await listings(a_user())
    theirs = await api.post("/api/files/bulk", files=one, data={"propertyId": property_id}, headers=bearer(owner))
    assert theirs.status_code == 403
    unknown = await api.post("/api/files/bulk", files=one, data={"propertyId": "prop-nope"}, headers=bearer(owner))
    assert unknown.status_code == 404


# ---- a listing's files ----


async def test_a_listings_files_come_photos_first_with_private_documents_hidden(api, listings):
    owner = a_user()
    property_id = await listings(owner)
    order = [("deed.pdf", pdf_document(), "document"), ("plan.png", png_image(20, 20), "floor_plan")]
    order += [("front.jpg", jpeg_with_gps(80, 60, seed=3), "photo"), ("hall.png", png_image(21, 20), "photo")]
    last = None
    for name, content, kind in order:
        last = await uploaded(api, owner, content, name, propertyId=property_id, kind=kind)
    token = {CONSISTENCY: last.headers[CONSISTENCY]}

    public = await api.get(f"/api/files/property/{property_id}", headers=token)
    assert public.status_code == 200
    names = [item["filename"] for item in public.json()["data"]["items"]]
    assert names == ["front.jpg", "hall.png", "plan.png"]
    mine = await api.get(f"/api/files/property/{property_id}", headers={**token, **bearer(owner)})
    items = mine.json()["data"]["items"]
    assert [(i["filename"], i["kind"]) for i in items] == [
        ("front.jpg", "photo"),
        ("hall.png", "photo"),
        ("plan.png", "floor_plan"),
        ("deed.pdf", "document"),
    ]
    assert all(item["url"] == f"/api/files/{item['id']}" for item in items)

    first = await api.get(f"/api/files/property/{property_id}?limit=2", headers={**token, **bearer(owner)})
    cursor = first.json()["data"]["nextCursor"]
    second = await api.get(f"/api/files/property/{property_id}?limit=2&cursor={cursor}", headers=bearer(owner))
    paged = [i["filename"] for i in first.json()["data"]["items"] + second.json()["data"]["items"]]
    assert paged == [i["filename"] for i in items] and second.json()["data"]["nextCursor"] is None

    assert (await api.get("/api/files/property/prop-doesnotexist")).status_code == 404
    assert (await api.get("/api/files/property/not-a-property")).status_code == 422
    assert (await api.get(f"/api/files/property/{property_id}?limit=101")).status_code == 422


# ---- optimisation ----


async def wait_for_job(api, url, headers, within=90):
    async def probe():
        return (await api.get(url, headers=headers)).json()["data"]

    return await eventually(probe, lambda job: job["status"] in ("done", "failed"), within=within, every=0.5)


async def test_optimised_variants_have_the_promised_widths_and_no_exif_gps(api, listings):
    owner = a_user()
    property_id = await listings(owner)
    photo = jpeg_with_gps(2000, 1500, seed=4)
    assert Image.open(io.BytesIO(photo)).getexif().get_ifd(GPS_IFD), "the source must carry GPS to prove anything"
    made = await uploaded(api, owner, photo, "terrace.jpg", propertyId=property_id)
    file_id, where = made.json()["data"]["id"], made.headers["Location"]

    started = await api.post(
        "/api/files/optimize",
        json={"fileIds": [file_id]},
        headers={**bearer(owner), CONSISTENCY: made.headers[CONSISTENCY]},
    )
    assert started.status_code == 202, started.text
    [job] = started.json()["data"]["jobs"]
    assert job["jobId"].startswith("job-") and job["variantsTotal"] == 6
    done = await wait_for_job(api, job["url"], {**bearer(owner), CONSISTENCY: started.headers[CONSISTENCY]})
    assert done["status"] == "done" and done["variantsDone"] == 6, done
    assert sorted((v["width"], v["format"]) for v in done["variants"]) == [
        (320, "jpeg"),
        (320, "webp"),
        (768, "jpeg"),
        (768, "webp"),
        (1600, "jpeg"),
        (1600, "webp"),
    ]
    for variant in done["variants"]:
        served = await api.get(variant["url"])
        assert served.status_code == 200, variant
        image = Image.open(io.BytesIO(served.content))
        assert (
            image.size
            == (variant["width"], round(1500 * variant["width"] / 2000))
            == (
                variant["pixelWidth"],
                variant["height"],
            )
        )
        assert image.format == {"jpeg": "JPEG", "webp": "WEBP"}[variant["format"]]
        exif = image.getexif()
        assert not exif.get_ifd(GPS_IFD) and GPS_IFD not in exif and len(exif) == 0
        assert "xmp" not in image.info and b"GPSLatitude" not in served.content
        assert served.headers["etag"] == f'"{hashlib.sha256(served.content).hexdigest()}"'
    # The listing's files show the variants' URLs.
    listed = await api.get(f"/api/files/property/{property_id}", headers={CONSISTENCY: started.headers[CONSISTENCY]})

    async def listed_variants():
        items = (await api.get(f"/api/files/property/{property_id}")).json()["data"]["items"]
        return [v["url"] for item in items if item["id"] == file_id for v in item["variants"]]

    urls = await eventually(listed_variants, lambda found: len(found) == 6, within=30)
    assert f"{where}?variant=768.webp" in urls and listed.status_code == 200


async def test_optimising_a_whole_listing_queues_a_job_per_image(api, listings):
    owner = a_user()
    property_id = await listings(owner)
    await uploaded(api, owner, png_image(400, 300), "a.png", propertyId=property_id)
    await uploaded(api, owner, pdf_document(), "deed.pdf", propertyId=property_id)
    last = await uploaded(api, owner, webp_image(500, 300), "b.webp", propertyId=property_id)
    started = await api.post(
        "/api/files/optimize",
        json={"propertyId": property_id},
        headers={**bearer(owner), CONSISTENCY: last.headers[CONSISTENCY]},
    )
    assert started.status_code == 202, started.text
    jobs = started.json()["data"]["jobs"]
    assert sorted(job["variantsTotal"] for job in jobs) == [3, 6]  # WebP once for a WebP original; PDFs skipped
    for job in jobs:
        done = await wait_for_job(api, job["url"], {**bearer(owner), CONSISTENCY: started.headers[CONSISTENCY]})
        assert done["status"] == "done"
        # Never upscaled: an original narrower than a size class gives that class at its own width.
        widths = {v["width"]: v["pixelWidth"] for v in done["variants"]}
        assert widths in ({320: 320, 768: 400, 1600: 400}, {320: 320, 768: 500, 1600: 500}), widths


async def test_optimize_refusals(api, listings):
    owner = a_user()
    photo = await uploaded(api, owner, png_image(30, 30), "p.png")
    pdf = await uploaded(api, owner, pdf_document(), "d.pdf")
    token = {CONSISTENCY: pdf.headers[CONSISTENCY]}
    photo_id, pdf_id = photo.json()["data"]["id"], pdf.json()["data"]["id"]
    assert (await api.post("/api/files/optimize", json={"fileIds": [photo_id]})).status_code == 401
    theirs = await api.post("/api/files/optimize", json={"fileIds": [photo_id]}, headers={**token, **bearer(a_user())})
    assert theirs.status_code == 403
    missing = await api.post("/api/files/optimize", json={"fileIds": ["file-nope"]}, headers={**token, **bearer(owner)})
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "fileIds[0]"
    not_image = await api.post("/api/files/optimize", json={"fileIds": [pdf_id]}, headers={**token, **bearer(owner)})
    assert not_image.status_code == 415 and not_image.json()["errors"][0]["field"] == "fileIds[0]"
    for body in ({}, {"fileIds": []}, {"fileIds": [photo_id], "propertyId": "prop-x"}, {"fileIds": ["nope"]}):
        assert (await api.post("/api/files/optimize", json=body, headers=bearer(owner))).status_code == 422, body
    other_listing = await listings(a_user())
    assert (
        await api.post("/api/files/optimize", json={"propertyId": other_listing}, headers=bearer(owner))
    ).status_code == 403
    assert (
        await api.post("/api/files/optimize", json={"propertyId": "prop-nope"}, headers=bearer(owner))
    ).status_code == 404

    started = await api.post("/api/files/optimize", json={"fileIds": [photo_id]}, headers={**token, **bearer(owner)})
    url = started.json()["data"]["jobs"][0]["url"]
    consistency = {CONSISTENCY: started.headers[CONSISTENCY]}
    assert (await api.get(url)).status_code == 401
    assert (await api.get(url, headers={**consistency, **bearer(a_user())})).status_code == 403
    assert (await api.get("/api/files/optimize/job-nope", headers=bearer(owner))).status_code == 404
    assert (await api.get("/api/files/optimize/not-a-job", headers=bearer(owner))).status_code == 422


async def test_a_truncated_photo_fails_its_job_with_a_clear_error_and_is_dead_lettered(api, settings):
    owner = a_user()
    whole = jpeg_with_gps(900, 700, seed=5)
    cut = whole[: len(whole) * 2 // 3]  # a JPEG has no end check at upload (phones append data after it)
    made = await uploaded(api, owner, cut, "cut.jpg")
    file_id = made.json()["data"]["id"]
    dlq = AIOKafkaConsumer(DEAD_LETTERS.name, bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await dlq.start()
    try:
        await dlq.seek_to_end()
        await dlq.position(next(iter(dlq.assignment())))
        started = await api.post(
            "/api/files/optimize",
            json={"fileIds": [file_id]},
            headers={**bearer(owner), CONSISTENCY: made.headers[CONSISTENCY]},
        )
        job = started.json()["data"]["jobs"][0]
        failed = await wait_for_job(api, job["url"], {**bearer(owner), CONSISTENCY: started.headers[CONSISTENCY]})
        assert failed["status"] == "failed" and "truncated" in failed["error"], failed

        async def dead_letter():
            batch = await dlq.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    headers = dict(message.headers)
                    if message.key == file_id.encode() and headers[DLQ_CONSUMER_HEADER].startswith(b"file-optimizer"):
                        return headers
            return None

        headers = await eventually(dead_letter, lambda found: found is not None, within=30)
        assert b"truncated" in headers[DLQ_ERROR_HEADER]
    finally:
        await dlq.stop()


# ---- erasure ----


async def test_a_deleted_users_files_are_erased(api, producer, listings, pg_module, settings):
    owner = a_user()
    property_id = await listings(owner)
    made = await uploaded(api, owner, png_image(33, 7), "Priya Reddy home.png", propertyId=property_id)
    file_id = made.json()["data"]["id"]
    await api.get(made.headers["Location"], headers={CONSISTENCY: made.headers[CONSISTENCY]})
    erased = new_event(type="user.deleted.v1", subject=owner, data={}, service="tests", userid=owner, sequence=2)
    sent = await (await producer.send(USERS.name, encode(erased), key=owner.encode()))
    token = {CONSISTENCY: f"{USERS.name}:{sent.partition}:{sent.offset}"}
    listed = await api.get(f"/api/files/property/{property_id}", headers=token)
    assert listed.headers.get("X-Consistency") != "stale"
    assert file_id not in [item["id"] for item in listed.json()["data"]["items"]]
    assert (await api.get(made.headers["Location"], headers=token)).status_code == 404
    cursor = await pg_module.execute("SELECT filename, deleted, erased FROM files WHERE id = %s", (file_id,))
    assert await cursor.fetchone() == (None, True, True)
    cache = redis.from_url(settings.redis_url)
    try:
        document = await cache.get(f"files:property:{property_id}")
        assert b"Priya Reddy" not in document and orjson.loads(document)["items"] == []
    finally:
        await cache.aclose()
    # An upload of theirs projected after the erasure (a replay, or one in flight) is erased at once.
    late = await uploaded(api, owner, png_image(34, 7), "Priya again.png", propertyId=property_id)
    assert (
        await api.get(late.headers["Location"], headers={CONSISTENCY: late.headers[CONSISTENCY]})
    ).status_code == 404
