"""The search projection's and the saved-search matcher's pure parts: records in, changes and events out."""

from datetime import UTC, datetime, timedelta

from schemas.codec import decode, encode
from schemas.envelope import new_event
from schemas.properties import PROPERTY_CREATED, PROPERTY_DELETED, PROPERTY_UPDATED
from schemas.searches import (
    SEARCH_PERFORMED,
    SEARCH_SAVED,
    SEARCH_SAVED_DELETED,
    SEARCH_SAVED_MATCH,
    saved_match_event_id,
)
from schemas.users import USER_DELETED, USER_LOGGED_IN
from streams.positions import RawRecord, SourcePosition
from streams.searches.matching import SavedSearchHit, alerts_due, match_event, percolation_document, plan_matches
from streams.searches.projection import (
    SavedSearchRemoved,
    SavedSearchRow,
    SavedSearchWritten,
    SearchRecorded,
    UserErased,
    plan_searches,
    saved_search_document,
)
from tests.unit.test_property_projection import LISTING

AT = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
CRITERIA = {"filters": {"location": ["Kondapur"]}, "price": {"max": 10_000_000}, "bedrooms": {"min": 2}}


def record(topic, event_type, data, subject, offset=7, key=None, sequence=None):
    event = new_event(
        type=event_type, subject=subject, data=data, service="tests", userid="user-1", time=AT, sequence=sequence
    )
    raw_key = (key or subject).encode()
    return RawRecord(raw_key, encode(event), SourcePosition(topic, 2, offset))


def saved(search_id="search-1", offset=7, key=None, criteria=CRITERIA):
    data = {"savedSearchId": search_id, "ownerId": "user-1", "name": "Kondapur 2BHK+", "criteria": criteria}
    return record("searches", SEARCH_SAVED, data, search_id, offset, key)


def test_saves_deletions_searches_and_erasures_become_changes_versioned_by_offset():
    records = [
        saved(offset=7),
        record("searches", SEARCH_SAVED_DELETED, {"savedSearchId": "search-1", "ownerId": "user-1"}, "search-1", 9),
        record(
            "searches",
            SEARCH_PERFORMED,
            {"userId": "user-1", "query": "3BHK", "filters": {}, "resultCount": 4},
            "user-1",
        ),
        record("users", USER_DELETED, {}, "user-1", sequence=3),
        record("users", USER_LOGGED_IN, {}, "user-1"),
    ]
    plan = plan_searches(records)
    assert plan.dead_letters == []
    written, removed, recorded, erased = plan.changes
    assert isinstance(written, SavedSearchWritten) and (written.version, written.criteria) == (7, CRITERIA)
    assert isinstance(removed, SavedSearchRemoved) and removed.version == 9
    assert isinstance(recorded, SearchRecorded) and (recorded.query, recorded.result_count) == ("3BHK", 4)
    assert isinstance(erased, UserErased) and erased.user_id == "user-1"
    assert len(plan.positions) == 5


def test_poison_is_dead_lettered_by_this_consumer():
    records = [
        saved(key="search-elsewhere"),  # offsets order a saved search only on its own partition
        saved(criteria={"price": {"min": 9, "max": 1}}),
        RawRecord(b"k", b"not json", SourcePosition("searches", 0, 1)),
        record("searches", "property.created.v1", {}, "search-1"),
    ]
    plan = plan_searches(records)
    assert plan.changes == []
    assert [letter.consumer for letter in plan.dead_letters] == ["search-projection"] * 4
    assert "keyed" in plan.dead_letters[0].error and "criteria" in plan.dead_letters[1].error


def test_match_events_on_searches_are_not_this_projections_business():
    match = record("searches", SEARCH_SAVED_MATCH, {"savedSearchId": "search-1"}, "search-1")
    assert plan_searches([match]).changes == []


def test_a_live_saved_search_is_a_percolator_document_and_a_deleted_one_is_none():
    row = SavedSearchRow("search-1", "user-1", "Kondapur", CRITERIA, False, 7, AT, AT)
    document = saved_search_document(row)
    assert document is not None
    assert document["savedSearchId"] == "search-1" and document["version"] == 7
    assert {"range": {"price": {"lte": 10_000_000}}} in document["query"]["bool"]["filter"]
    gone = SavedSearchRow("search-1", "user-1", None, None, True, 9, AT, AT)
    assert saved_search_document(gone) is None


def property_record(event_type, data, sequence, subject="prop-1", offset=5):
    return record("properties", event_type, data, subject, offset, sequence=sequence)


def test_the_matcher_percolates_the_newest_listing_of_each_property():
    listing = {**LISTING, "location": "Kondapur", "price": 9_000_000}
    records = [
        property_record(PROPERTY_CREATED, {"ownerId": "user-9", "listing": LISTING, "featured": False}, 1),
        property_record(PROPERTY_UPDATED, {"listing": listing, "featured": False, "changedFields": ["price"]}, 2),
        property_record(PROPERTY_DELETED, {"ownerId": "user-9"}, 1, subject="prop-2"),
    ]
    plan = plan_matches(records)
    assert plan.dead_letters == []
    [listed] = plan.listings
    assert (listed.property_id, listed.version, listed.listing.location) == ("prop-1", 2, "Kondapur")
    document = percolation_document(listed)
    assert document["location"] == "Kondapur" and document["price"] == 9_000_000
    assert document["geo"] == {"lat": 17.44, "lon": 78.35} and "ownerId" not in document


def test_a_match_event_is_the_same_bytes_however_often_it_is_made():
    created = property_record(PROPERTY_CREATED, {"ownerId": "user-9", "listing": LISTING, "featured": False}, 1)
    [listed] = plan_matches([created]).listings
    hit = SavedSearchHit(0, "search-1", "user-1", "Kondapur 2BHK+")
    first, again = match_event(hit, listed), match_event(hit, listed)
    assert encode(first) == encode(again)
    assert first.id == saved_match_event_id("search-1", "prop-1")
    assert (first.subject, first.userid, first.type) == ("search-1", "user-1", SEARCH_SAVED_MATCH)
    assert decode(encode(first)).data == {
        "savedSearchId": "search-1",
        "userId": "user-1",
        "propertyId": "prop-1",
        "searchName": "Kondapur 2BHK+",
        "title": LISTING["title"],
        "location": LISTING["location"],
        "price": LISTING["price"],
        "bedrooms": LISTING["bedrooms"],
    }


def test_only_listings_created_or_changed_after_the_save_alert():
    created = property_record(PROPERTY_CREATED, {"ownerId": "user-9", "listing": LISTING, "featured": False}, 1)
    [listed] = plan_matches([created]).listings
    before, after = listed.at - timedelta(seconds=1), listed.at + timedelta(seconds=1)
    hits = [
        SavedSearchHit(0, "search-old", "user-1", "saved before", before),
        SavedSearchHit(0, "search-new", "user-2", "saved after", after),
    ]
    assert [hit.saved_search_id for hit, _ in alerts_due(hits, [listed])] == ["search-old"]
