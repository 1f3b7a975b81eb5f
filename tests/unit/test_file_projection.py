"""The file projection's pure part: records in, changes or dead letters out."""

from schemas.codec import encode
from schemas.envelope import new_event
from schemas.files import FILE_DELETED, FILE_OPTIMIZE_REQUESTED, FILE_UPLOADED
from streams.files.projection import (
    FileRemoved,
    FileStored,
    JobQueued,
    OwnerErased,
    plan_files,
)
from streams.positions import RawRecord, SourcePosition

SHA = "a" * 64


def record(event, topic="files", offset=1, key=None):
    return RawRecord(
        (key if key is not None else event.subject).encode(), encode(event), SourcePosition(topic, 0, offset)
    )


def uploaded(file_id="file-1", **changes):
    data = {
        "fileId": file_id,
        "ownerId": "user-1",
        "propertyId": "prop-1",
        "kind": "photo",
        "contentType": "image/jpeg",
        "sizeBytes": 10,
        "sha256": SHA,
        "filename": "a.jpg",
        **changes,
    }
    return new_event(type=FILE_UPLOADED, subject=file_id, data=data, service="file")


def test_each_event_type_becomes_its_change_with_the_record_offset():
    deleted = new_event(
        type=FILE_DELETED, subject="file-1", data={"fileId": "file-1", "ownerId": "user-1"}, service="file"
    )
    request = new_event(
        type=FILE_OPTIMIZE_REQUESTED,
        subject="file-1",
        data={"jobId": "job-1", "fileId": "file-1", "sha256": SHA, "contentType": "image/png", "requestedBy": "user-1"},
        service="file",
    )
    plan = plan_files([record(uploaded(), offset=5), record(deleted, offset=6), record(request, offset=7)])
    stored, removed, queued = (p.change for p in plan.changes)
    assert isinstance(stored, FileStored) and stored.offset == 5 and stored.file.sha256 == SHA
    assert isinstance(removed, FileRemoved) and removed.offset == 6
    assert isinstance(queued, JobQueued) and queued.formats == ("webp", "png")
    assert plan.dead_letters == [] and [p.offset for p in plan.positions] == [5, 6, 7]


def test_only_user_deletions_matter_on_the_users_topic():
    gone = new_event(type="user.deleted.v1", subject="user-9", data={}, service="user", sequence=3)
    login = new_event(type="user.logged_in.v1", subject="user-9", data={"method": "password"}, service="user")
    plan = plan_files([record(gone, topic="users"), record(login, topic="users", offset=2)])
    assert [type(p.change) for p in plan.changes] == [OwnerErased] and plan.changes[0].change.user_id == "user-9"
    assert len(plan.positions) == 2


def test_poison_is_dead_lettered_with_the_reason():
    wrong_key = record(uploaded(), key="file-other")
    wrong_subject = record(new_event(type=FILE_UPLOADED, subject="file-2", data=uploaded().data, service="x"))
    foreign = record(new_event(type="property.created.v1", subject="file-3", data={}, service="x"))
    broken = RawRecord(b"file-4", b'{"specversion": "1.0", "id":', SourcePosition("files", 0, 9))
    bad_sha = record(uploaded(sha256="not-a-hash"))
    plan = plan_files([wrong_key, wrong_subject, foreign, broken, bad_sha])
    assert plan.changes == [] and len(plan.dead_letters) == 5
    reasons = [letter.error for letter in plan.dead_letters]
    assert "file id" in reasons[0] and "file id" in reasons[1] and "does not belong" in reasons[2]
    assert "malformed JSON" in reasons[3] and "sha256" in reasons[4]
