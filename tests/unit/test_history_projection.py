"""The pure part of user history: which events become whose activities, and what is never copied."""

import orjson
import pytest

from schemas.codec import encode
from schemas.envelope import new_event
from schemas.history import ACTIVITY_CATEGORIES
from streams.history.projection import Activity, Erasure, OwnerFact, plan_history
from streams.positions import RawRecord, SourcePosition
from tests.support.property_projection import created, deleted, images_added, updated, viewed


def record(event, offset=0, topic="t"):
    return RawRecord(event.subject.encode(), encode(event), SourcePosition(topic, 0, offset))


def only(plan, kind):
    return [f for f in (*plan.activities, *plan.owners, *plan.erasures) if isinstance(f, kind)]


def test_a_listing_s_life_is_its_owner_s_history_and_names_the_owner():
    events = [
        created("prop-1", "user-a", "run"),
        updated("prop-1", "user-a", "run", 2, price=7_000_000),
        images_added("prop-1", "user-a", "run", 3, 2),
        deleted("prop-1", "user-a", "run", 4),
    ]
    plan = plan_history([record(e, n) for n, e in enumerate(events)])
    assert [(a.user_id, a.activity_type, a.property_id) for a in plan.activities] == [
        ("user-a", "property.created", "prop-1"),
        ("user-a", "property.updated", "prop-1"),
        ("user-a", "property.images_added", "prop-1"),
        ("user-a", "property.deleted", "prop-1"),
    ]
    assert plan.activities[1].details["changedFields"] == ["price"]
    assert plan.activities[2].details == {"added": 1, "total": 2}
    assert {(o.property_id, o.owner_id) for o in plan.owners} == {("prop-1", "user-a")}
    assert plan.positions == [SourcePosition("t", 0, n) for n in range(4)]


def test_an_admin_s_edit_is_the_admin_s_activity():
    edit = updated("prop-1", "user-admin", "run", 2, price=1)
    [activity] = plan_history([record(edit)]).activities
    assert activity.user_id == "user-admin"


def test_views_keep_their_viewer_and_anonymous_views_are_kept_without_one():
    signed_in = new_event(
        type="property.viewed.v1", subject="prop-1", data={"viewerId": "user-b"}, service="t", userid="user-b"
    )
    plan = plan_history([record(signed_in, 0), record(viewed("prop-1", "run"), 1)])
    assert [(a.user_id, a.activity_type) for a in plan.activities] == [
        ("user-b", "property.viewed"),
        (None, "property.viewed"),
    ]


def test_registration_login_and_profile_updates_copy_nothing_personal():
    user = "user-priya"
    sealed = {"email": "pii:v1:aaa", "name": "pii:v1:bbb", "phone": "pii:v1:ccc", "passwordHash": "pii:v1:ddd"}
    events = [
        new_event(type="user.registered.v1", subject=user, data=sealed, service="t", userid=user, sequence=1),
        new_event(type="user.logged_in.v1", subject=user, data={"method": "password"}, service="t", userid=user),
        new_event(
            type="user.profile_updated.v1",
            subject=user,
            data={"name": "pii:v1:eee", "phone": "pii:v1:fff", "changedFields": ["name"]},
            service="t",
            userid=user,
            sequence=2,
        ),
    ]
    plan = plan_history([record(e, n) for n, e in enumerate(events)])
    assert [a.activity_type for a in plan.activities] == ["user.registered", "user.logged_in", "user.profile_updated"]
    stored = orjson.dumps([(a.summary, a.details) for a in plan.activities])
    assert b"pii:" not in stored
    assert plan.activities[2].details == {"changedFields": ["name"]}


def test_a_file_upload_keeps_no_file_name():
    upload = new_event(
        type="file.uploaded.v1",
        subject="file-1",
        data={
            "fileId": "file-1",
            "ownerId": "user-a",
            "propertyId": "prop-1",
            "kind": "floor_plan",
            "contentType": "application/pdf",
            "sizeBytes": 1234,
            "sha256": "0" * 64,
            "filename": "priya-reddy-sale-deed.pdf",
        },
        service="t",
        userid="user-a",
    )
    [activity] = plan_history([record(upload)]).activities
    assert activity.user_id == "user-a" and activity.property_id == "prop-1"
    assert b"priya" not in orjson.dumps([activity.summary, activity.details])


def test_searches_by_the_contract():
    performed = new_event(
        type="search.performed.v1",
        subject="user-a",
        data={"userId": "user-a", "query": "villa in Kokapet", "filters": {"bedrooms": 3}, "resultCount": 4},
        service="t",
        userid="user-a",
    )
    saved = new_event(
        type="search.saved.v1",
        subject="search-1",
        data={"savedSearchId": "search-1", "ownerId": "user-a", "name": "Villas", "criteria": {"q": "villa"}},
        service="t",
        userid="user-a",
    )
    plan = plan_history([record(performed, 0), record(saved, 1)])
    assert [(a.user_id, a.activity_type, a.category) for a in plan.activities] == [
        ("user-a", "search.performed", "search"),
        ("user-a", "search.saved", "search"),
    ]
    assert plan.activities[0].details["resultCount"] == 4


def test_a_closed_account_is_an_erasure_not_an_activity():
    closed = new_event(type="user.deleted.v1", subject="user-a", data={}, service="t", userid="user-a", sequence=5)
    plan = plan_history([record(closed)])
    assert plan.activities == [] and only(plan, Erasure)[0].user_id == "user-a"


def test_events_history_has_nothing_to_do_with_are_skipped_not_dead_lettered():
    recount = new_event(
        type="user.property_count_updated.v1", subject="user-a", data={"propertyCount": 2}, service="t", sequence=3
    )
    notified = new_event(type="notification.sent.v1", subject="notif-1", data={"anything": 1}, service="t")
    plan = plan_history([record(recount, 0), record(notified, 1)])
    assert plan.activities == [] and plan.dead_letters == [] and len(plan.positions) == 2


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "malformed JSON"),
        (b'{"specversion": "1.0"}', "invalid event"),
        (
            encode(new_event(type="property.created.v1", subject="prop-1", data={"listing": {}}, service="t")),
            "invalid property.created.v1",
        ),
        (encode(new_event(type="file.uploaded.v1", subject="file-1", data={"fileId": "file-1"}, service="t")), "owner"),
    ],
)
def test_poison_is_dead_lettered_with_the_reason(raw, reason):
    plan = plan_history([RawRecord(b"k", raw, SourcePosition("t", 0, 7))])
    [letter] = plan.dead_letters
    assert reason in letter.error and letter.position.offset == 7 and letter.value == raw
    assert plan.activities == [] and plan.positions == [SourcePosition("t", 0, 7)]


def test_a_one_user_rebuild_keeps_their_rows_every_view_and_every_owner():
    events = [
        created("prop-1", "user-a", "run"),
        created("prop-2", "user-b", "run"),
        new_event(
            type="property.viewed.v1", subject="prop-1", data={"viewerId": "user-b"}, service="t", userid="user-b"
        ),
    ]
    plan = plan_history([record(e, n) for n, e in enumerate(events)]).only_user("user-a")
    assert [(a.user_id, a.activity_type) for a in plan.activities] == [
        ("user-a", "property.created"),
        ("user-b", "property.viewed"),
    ]
    assert len(only(plan, OwnerFact)) == 2


def test_every_activity_type_has_a_category():
    events = [created("prop-1", "user-a", "run"), viewed("prop-1", "run")]
    for activity in plan_history([record(e) for e in events]).activities:
        assert isinstance(activity, Activity) and activity.activity_type in ACTIVITY_CATEGORIES
        assert activity.document()["category"] == activity.category
