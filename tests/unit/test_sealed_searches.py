"""A search's words and a saved search's name travel sealed: the search projection opens them with the
user's key (and writes nothing once the key is gone); the history service opens its activities."""

from datetime import UTC, datetime

from schemas.codec import encode
from schemas.envelope import new_event
from schemas.history import opened_activity, search_summary
from schemas.personal import SEARCH_NAME, SEARCH_QUERY, new_personal_key, seal, unseal
from schemas.searches import SEARCH_PERFORMED, SEARCH_SAVED
from schemas.topics import SEARCHES
from streams.positions import RawRecord, SourcePosition
from streams.searches.projection import SavedSearchWritten, SearchRecorded, opened, plan_searches, sealed_for

KEY = new_personal_key()
AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def record(event_type: str, data: dict, subject: str) -> RawRecord:
    event = new_event(type=event_type, subject=subject, data=data, service="tests", userid="user-1", time=AT)
    return RawRecord(subject.encode(), encode(event), SourcePosition(SEARCHES.name, 0, 3))


def planned(records: list[RawRecord]):
    plan = plan_searches(records)
    assert plan.dead_letters == []
    return plan.changes


def test_a_sealed_saved_search_is_opened_with_its_owners_key():
    name, q = seal(KEY, "user-1", SEARCH_NAME, "Asha's flat hunt"), seal(KEY, "user-1", SEARCH_QUERY, "lake view")
    criteria = {"q": q, "bedrooms": {"min": 2}}
    data = {"savedSearchId": "search-1", "ownerId": "user-1", "name": name, "criteria": criteria}
    [change] = planned([record(SEARCH_SAVED, data, "search-1")])
    assert sealed_for([change]) == {"user-1"}
    open_ = opened(change, {"user-1": KEY})
    assert isinstance(open_, SavedSearchWritten)
    assert (open_.name, open_.criteria, open_.sealed_query) == (
        "Asha's flat hunt",
        {"bedrooms": {"min": 2}, "q": "lake view"},
        None,
    )
    assert opened(change, {}) is None  # the key is gone: nothing of the closed account is written


def test_a_sealed_search_is_opened_or_dropped():
    query = seal(KEY, "user-1", SEARCH_QUERY, "villa kokapet")
    data = {"userId": "user-1", "query": query, "filters": {}, "resultCount": 3}
    [change] = planned([record(SEARCH_PERFORMED, data, "user-1")])
    open_ = opened(change, {"user-1": KEY})
    assert isinstance(open_, SearchRecorded) and open_.query == "villa kokapet"
    assert opened(change, {"user-1": new_personal_key()}) is None


def test_words_in_the_clear_stay_as_they_were():
    data = {"userId": "user-2", "query": "3BHK Gachibowli", "filters": {}, "resultCount": 1}
    [change] = planned([record(SEARCH_PERFORMED, data, "user-2")])
    assert sealed_for([change]) == set()
    assert opened(change, {}) == change


def test_history_activities_open_their_words_with_the_key():
    query = seal(KEY, "user-1", SEARCH_QUERY, "lake view")
    activity = {"type": "search.performed", "summary": search_summary(query), "details": {"query": query}}
    assert "lake" not in activity["summary"] and query not in activity["summary"]

    def open_text(field: str, value: str) -> str:
        return unseal(KEY, "user-1", field, value)

    shown = opened_activity(activity, open_text)
    assert (shown["summary"], shown["details"]["query"]) == ("Searched for 'lake view'", "lake view")
    gone = opened_activity(activity, lambda field, value: None)
    assert (gone["summary"], gone["details"]["query"]) == ("Searched with filters", None)
    name = seal(KEY, "user-1", SEARCH_NAME, "Asha's flat hunt")
    saved = {"type": "search.saved", "details": {"name": name, "criteria": {"q": query}}}
    shown = opened_activity(saved, open_text)
    assert shown["summary"] == 'Saved the search "Asha\'s flat hunt"'
    assert shown["details"]["criteria"] == {"q": "lake view"}
