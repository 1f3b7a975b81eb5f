"""A search's words and a saved search's name travel sealed: the search projection opens them with the
user's key (and writes nothing once the key is gone); the history service opens its activities; a
listing alert carries the name sealed from the matcher to where its texts are rendered."""

from datetime import UTC, datetime, timedelta

from schemas.codec import encode
from schemas.envelope import new_event
from schemas.history import opened_activity, search_summary
from schemas.notifications import (
    NOTIFICATION_REQUESTED,
    NotificationRequested,
    in_app,
    names_a_sealed_search,
    open_search_name,
    render,
    sms_text,
)
from schemas.personal import PREFIX, SEARCH_NAME, SEARCH_QUERY, is_sealed, new_personal_key, seal, unseal
from schemas.properties import ListingFields
from schemas.registry import EVENTS
from schemas.searches import SEARCH_PERFORMED, SEARCH_SAVED
from schemas.topics import SEARCHES
from streams.notifications.projection import Recorded, notification_changes
from streams.notifications.triggers import plan_triggers
from streams.positions import RawRecord, SourcePosition
from streams.searches.matching import ListedProperty, SavedSearchHit, match_event, with_sealed_names
from streams.searches.projection import SavedSearchWritten, SearchRecorded, opened, plan_searches, sealed_for
from tests.support.properties import SEED_BODY

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


# ---- listing alerts: the saved search's name, sealed from the matcher to the rendered text ----

LISTED = ListedProperty(
    property_id="prop-1",
    version=1,
    event_id="evt-listed",
    correlation_id=None,
    at=AT,
    listing=ListingFields.model_validate({**SEED_BODY, "title": "2BHK"}),
    featured=False,
)


def alert_request(search_name: str | None) -> NotificationRequested:
    hit = SavedSearchHit(0, "search-1", "user-1", search_name)
    [envelope] = plan_triggers([record_of(match_event(hit, LISTED))], AT, timedelta(days=1)).requests
    request = EVENTS.read(envelope).data
    assert isinstance(request, NotificationRequested)
    return request


def record_of(envelope) -> RawRecord:
    return RawRecord(envelope.subject.encode(), encode(envelope), SourcePosition(SEARCHES.name, 0, 4))


def test_the_matcher_seals_each_saved_searchs_name_with_its_owners_key_and_drops_it_without_one():
    hits = [
        SavedSearchHit(0, "search-1", "user-1", "Asha's flat hunt"),
        SavedSearchHit(0, "search-2", "user-2", "Mine"),
    ]
    [(sealed, _), (keyless, _)] = with_sealed_names([(hit, LISTED) for hit in hits], {"user-1": KEY})
    assert sealed.name is not None and is_sealed(sealed.name)
    assert unseal(KEY, "user-1", SEARCH_NAME, sealed.name) == "Asha's flat hunt"
    assert keyless.name is None  # a closing account: no name rather than the name in the clear
    match = match_event(sealed, LISTED)
    assert match.data["searchName"] == sealed.name and "Asha" not in encode(match).decode()


def test_an_alert_names_its_saved_search_only_where_it_is_rendered_with_the_owners_key():
    sealed = seal(KEY, "user-1", SEARCH_NAME, "Asha's flat hunt")
    request = alert_request(sealed)
    assert request.content.variables["searchName"] == sealed  # the request on `notifications` stays sealed
    assert names_a_sealed_search(request.content)
    opened = open_search_name(request.content, "user-1", KEY)
    assert in_app(opened)[0] == "New match for \u201cAsha's flat hunt\u201d"
    assert render(opened).subject == "New match for \u201cAsha's flat hunt\u201d: 2BHK"
    assert "your saved search \u201cAsha's flat hunt\u201d" in render(opened).text
    assert sms_text(opened).startswith("New match for \u201cAsha's flat hunt\u201d: 2BHK")
    # The key gone (or another user's): the texts speak of a saved search, never of its ciphertext.
    for content in (
        open_search_name(request.content, "user-1", None),
        open_search_name(request.content, "user-1", new_personal_key()),
        request.content,
    ):
        assert in_app(content)[0] == "New match for a saved search"
        assert "one of your saved searches" in render(content).text and PREFIX not in render(content).text
        assert PREFIX not in sms_text(content)


def test_the_inbox_opens_a_sealed_alert_name_and_an_older_alerts_clear_name_reads_as_before():
    sealed = alert_request(seal(KEY, "user-1", SEARCH_NAME, "Asha's flat hunt"))
    [recorded] = notification_changes(record_of(requested(sealed)))
    assert isinstance(recorded, Recorded) and recorded.alert == sealed.content
    assert recorded.title == "New match for a saved search"  # what the sink writes unless the key opens it
    older = alert_request("Villas in Kokapet")
    assert not names_a_sealed_search(older.content)
    assert open_search_name(older.content, "user-1", None) == older.content
    [recorded] = notification_changes(record_of(requested(older)))
    assert isinstance(recorded, Recorded) and recorded.alert is None
    assert recorded.title == "New match for \u201cVillas in Kokapet\u201d"


def requested(request: NotificationRequested):
    return new_event(
        type=NOTIFICATION_REQUESTED,
        subject=request.notification_id,
        data=request.to_wire(),
        service="tests",
        userid="user-1",
        time=AT,
    )
