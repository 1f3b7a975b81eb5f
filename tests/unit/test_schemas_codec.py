from datetime import UTC, datetime

import orjson
import pytest

from schemas.codec import EventDecodeError, UnstorableEvent, decode, document_problem, encode, nul_path
from schemas.envelope import new_event


def a_property_created():
    return new_event(
        type="property.created.v1",
        subject="prop-123",
        data={"title": "3BHK Apartment", "location": "Gachibowli", "price": 9500000},
        service="property",
        userid="user-456",
        sessionid="session-abc",
        sequence=1,
        time=datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
    )


def test_an_event_survives_a_round_trip():
    event = a_property_created()
    assert decode(encode(event)) == event


def test_the_wire_form_is_cloudevents_json_with_utc_z_time():
    wire = orjson.loads(encode(a_property_created()))
    assert wire["specversion"] == "1.0"
    assert wire["id"].startswith("evt-")
    assert wire["type"] == "property.created.v1"
    assert wire["source"] == "/hyderabad-infra/property"
    assert wire["subject"] == "prop-123"
    assert wire["time"] == "2024-01-15T10:30:00.000Z"
    assert wire["userid"] == "user-456" and wire["sessionid"] == "session-abc" and wire["sequence"] == 1
    assert wire["correlationid"] == wire["id"], "a fresh event starts its own correlation"
    assert "causationid" not in wire, "absent attributes are left out, not sent as null"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "empty message"),
        (None, "empty message"),
        (b"[1, 2]", "JSON object"),
        (b'{"specversion": "0.3"}', "specversion"),
    ],
)
def test_unreadable_bytes_give_a_clear_reason(raw, reason):
    with pytest.raises(EventDecodeError, match=reason):
        decode(raw)


def test_a_missing_attribute_is_named():
    wire = orjson.loads(encode(a_property_created()))
    del wire["subject"]
    with pytest.raises(EventDecodeError, match="subject"):
        decode(orjson.dumps(wire))


def test_an_unversioned_type_is_refused():
    wire = orjson.loads(encode(a_property_created()))
    wire["type"] = "property.created"
    with pytest.raises(EventDecodeError, match="type"):
        decode(orjson.dumps(wire))


def test_a_time_without_zone_is_refused():
    wire = orjson.loads(encode(a_property_created()))
    wire["time"] = "2024-01-15T10:30:00"
    with pytest.raises(EventDecodeError, match="time"):
        decode(orjson.dumps(wire))


def test_a_time_in_another_zone_is_normalised_to_utc():
    wire = orjson.loads(encode(a_property_created()))
    wire["time"] = "2024-01-15T16:00:00+05:30"
    assert decode(orjson.dumps(wire)).time == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


def nested(levels: int, innermost: object = "x") -> dict:
    document: dict = {"a": innermost}
    for _ in range(levels - 1):
        document = {"a": document}
    return document


def test_an_event_with_a_nul_anywhere_is_refused_before_publishing_naming_the_field():
    for data, field in (
        ({"title": "3BHK\x00"}, "title"),
        ({"listing": {"amenities": ["gym", "p\x00ol"]}}, "listing.amenities[1]"),
        ({"attributes": {"fac\x00ing": "east"}}, "attributes.facing"),
    ):
        event = new_event(type="property.created.v1", subject="prop-1", data=data, service="property")
        with pytest.raises(UnstorableEvent) as refused:
            encode(event)
        assert (refused.value.field, refused.value.problem) == (field, "must not contain a NUL character (\\u0000)")
    with pytest.raises(UnstorableEvent, match="subject"):
        encode(new_event(type="property.created.v1", subject="prop-\x001", data={}, service="property"))


def test_an_event_nested_past_the_limit_is_refused_naming_its_outermost_field():
    fits = new_event(type="property.created.v1", subject="prop-1", data={"attributes": nested(63)}, service="p")
    assert decode(encode(fits)) == fits
    for levels in (65, 300):  # 300: past orjson's and pydantic's own limits, which would raise unnamed
        event = new_event(
            type="property.created.v1", subject="prop-1", data={"attributes": nested(levels)}, service="p"
        )
        with pytest.raises(UnstorableEvent) as refused:
            encode(event)
        assert (refused.value.field, refused.value.problem) == ("attributes", "must not nest deeper than 64 levels")


def test_the_walkers_take_documents_deeper_than_python_recursion():
    deep = nested(50_000, "n\x00l")
    assert nul_path(deep) == "a" + ".a" * 49_999
    assert document_problem(deep, 32) == ("a", "must not nest deeper than 32 levels")
    assert document_problem(nested(32), 32) is None
    assert document_problem(["ok", {"k": "fine"}], 32) is None
