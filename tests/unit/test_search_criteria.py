"""Search criteria and their meaning as a query: what the search service runs and the percolator registers."""

import pytest
from pydantic import ValidationError

from schemas.search_query import bedrooms_named, localities_named, percolator_query, search_query
from schemas.searches import SearchCriteria, saved_match_event_id


def kondapur_under_a_crore() -> SearchCriteria:
    return SearchCriteria.model_validate(
        {"filters": {"location": ["Kondapur"]}, "price": {"max": 10_000_000}, "bedrooms": {"min": 2}}
    )


def test_criteria_on_the_wire_keep_only_what_is_set():
    assert kondapur_under_a_crore().to_wire() == {
        "filters": {"location": ["Kondapur"]},
        "price": {"max": 10_000_000},
        "bedrooms": {"min": 2},
    }
    assert SearchCriteria().empty and not kondapur_under_a_crore().empty


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"price": {"min": 5, "max": 4}}, ("price", "max")),
        ({"bedrooms": {"min": -1}}, ("bedrooms", "min")),
        ({"near": {"lat": 17.4, "lon": 78.3, "km": 0}}, ("near", "km")),
        ({"filters": {"propertyType": ["CASTLE"]}}, ("filters", "propertyType", 0)),
        ({"colour": "red"}, ("colour",)),
        ({"q": "   "}, ("q",)),
    ],
)
def test_bad_criteria_name_the_field(body, where):
    with pytest.raises(ValidationError) as caught:
        SearchCriteria.model_validate(body)
    assert caught.value.errors()[0]["loc"] == where


def test_words_of_a_query_name_localities_and_bedrooms_whatever_the_spelling():
    assert localities_named("3BHK near hi-tech city or Gachibouli") == ["HITEC City", "Gachibowli"]
    assert localities_named("Gachibowli Financial District") == ["Financial District"]
    assert localities_named("kondapurx") == []
    assert bedrooms_named("3 BHK or 4-bhk, not 5bhks") == [3, 4]


def test_the_search_query_filters_and_ranks_by_what_the_words_say():
    criteria = SearchCriteria.model_validate({"q": "3BHK Gachibowli", "exclude": {"propertyType": ["PLOT"]}})
    query = search_query(criteria)["bool"]
    assert query["must"][0]["multi_match"]["operator"] == "and"
    assert query["must_not"] == [{"terms": {"propertyType": ["PLOT"]}}]
    assert {"term": {"location": {"value": "Gachibowli", "boost": 4.0}}} in query["should"]
    assert {"terms": {"bedrooms": [3], "boost": 3.0}} in query["should"]


def test_the_percolator_query_is_the_search_without_ranking():
    criteria = kondapur_under_a_crore()
    registered = percolator_query(criteria)["bool"]
    assert "should" not in registered
    assert registered["filter"] == [
        {"terms": {"location": ["Kondapur"]}},
        {"range": {"price": {"lte": 10_000_000}}},
        {"range": {"bedrooms": {"gte": 2}}},
    ]
    assert registered["must"] == [{"match_all": {}}]


def test_amenities_all_and_any_and_distance():
    amenities = {"all": ["Gym", "gym", "Pool"], "any": ["clubhouse"]}
    criteria = SearchCriteria.model_validate({"amenities": amenities, "near": {"lat": 17.4, "lon": 78.3, "km": 2}})
    clauses = search_query(criteria)["bool"]["filter"]
    assert {"term": {"amenities": "Gym"}} in clauses and {"term": {"amenities": "Pool"}} in clauses
    assert {"terms": {"amenities": ["clubhouse"]}} in clauses
    assert {"geo_distance": {"distance": "2.0km", "geo": {"lat": 17.4, "lon": 78.3}}} in clauses


def test_a_match_event_id_is_one_per_saved_search_and_listing():
    assert saved_match_event_id("search-1", "prop-1") == saved_match_event_id("search-1", "prop-1")
    assert saved_match_event_id("search-1", "prop-1") != saved_match_event_id("search-1", "prop-2")
    assert saved_match_event_id("search-1", "prop-1").startswith("evt-")
