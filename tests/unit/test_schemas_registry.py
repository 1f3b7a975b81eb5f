"""The registry's upcasting, shown on a two-version event defined here (the product's own events
register into `schemas.registry.EVENTS` in their aggregate modules)."""

import pytest

from schemas.codec import EventDecodeError, decode, encode
from schemas.envelope import new_event
from schemas.registry import EventData, EventRegistry, UnknownEventType


class ListingPricedV2(EventData):
    price: int
    currency: str


def priced_in_rupees(v1: dict) -> dict:
    # v1 carried a bare rupee amount; v2 names its currency.
    return {"price": v1["amount"], "currency": "INR"}


@pytest.fixture
def registry():
    registry = EventRegistry()
    registry.register("listing.priced.v2", ListingPricedV2)
    registry.register_upcaster("listing.priced.v1", "listing.priced.v2", priced_in_rupees)
    return registry


def test_an_old_version_is_upcast_to_the_current_one(registry):
    old = new_event(type="listing.priced.v1", subject="prop-1", data={"amount": 9500000}, service="property")
    typed = registry.read(decode(encode(old)))
    assert typed.envelope.type == "listing.priced.v2"
    assert typed.data == ListingPricedV2(price=9500000, currency="INR")
    assert typed.envelope.id == old.id and typed.envelope.time == old.time, "upcasting keeps identity"


def test_the_current_version_is_read_as_is(registry):
    event = new_event(type="listing.priced.v2", subject="prop-1", data={"price": 1, "currency": "INR"}, service="p")
    assert registry.read(event).data.price == 1


def test_an_unknown_type_is_a_clear_error(registry):
    event = new_event(type="listing.teleported.v1", subject="prop-1", data={}, service="property")
    with pytest.raises(UnknownEventType, match=r"listing\.teleported\.v1"):
        registry.read(event)


def test_a_payload_that_does_not_fit_its_model_names_the_field(registry):
    event = new_event(type="listing.priced.v2", subject="prop-1", data={"price": "lots"}, service="property")
    with pytest.raises(EventDecodeError, match=r"price.*currency|currency.*price"):
        registry.read(event)


def test_payloads_are_camel_case_on_the_wire():
    class ListingViewed(EventData):
        viewer_id: str

    assert ListingViewed(viewer_id="user-1").to_wire() == {"viewerId": "user-1"}


def test_a_type_cannot_be_registered_twice(registry):
    with pytest.raises(ValueError, match="twice"):
        registry.register("listing.priced.v1", ListingPricedV2)
