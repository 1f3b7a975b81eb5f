import orjson

from schemas.codec import encode
from schemas.envelope import new_event
from schemas.topics import DLQ_ERROR_HEADER, DLQ_SOURCE_OFFSET_HEADER, DLQ_SOURCE_TOPIC_HEADER
from streams.archive.projection import RawRecord, plan_archive
from streams.positions import SourcePosition


def record(value: bytes | None, offset: int = 7) -> RawRecord:
    return RawRecord(b"prop-1", value, SourcePosition("properties", 2, offset))


def test_a_well_formed_event_becomes_a_row_with_its_position():
    event = new_event(type="property.created.v1", subject="prop-1", data={"a": 1}, service="p", userid="user-1")
    plan = plan_archive([record(encode(event))])
    assert plan.dead_letters == []
    [row] = plan.rows
    assert (row.event_id, row.subject, row.user_id, row.data) == (event.id, "prop-1", "user-1", {"a": 1})
    assert row.position == SourcePosition("properties", 2, 7)


def test_poison_goes_to_dead_letters_and_the_rest_is_kept():
    good = encode(new_event(type="property.created.v1", subject="prop-1", data={}, service="p"))
    plan = plan_archive([record(b"{oops", offset=1), record(good, offset=2)])
    assert [r.position.offset for r in plan.rows] == [2]
    [dead] = plan.dead_letters
    headers = dict(dead.headers())
    assert dead.value == b"{oops" and dead.key == b"prop-1"
    assert b"malformed JSON" in headers[DLQ_ERROR_HEADER]
    assert headers[DLQ_SOURCE_TOPIC_HEADER] == b"properties"
    assert headers[DLQ_SOURCE_OFFSET_HEADER] == b"1"


def test_an_event_postgres_cannot_store_is_dead_lettered():
    wire = orjson.loads(encode(new_event(type="property.created.v1", subject="prop-1", data={}, service="p")))
    wire["data"] = {"title": "nul\u0000byte"}
    plan = plan_archive([record(orjson.dumps(wire))])
    assert plan.rows == []
    assert "NUL" in plan.dead_letters[0].error
