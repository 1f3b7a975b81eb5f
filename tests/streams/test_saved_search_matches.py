"""What the saved-search matcher sends (streams/searches/matcher_app.py `match_producer`), no
broker: one `search.saved_match.v1` per (saved search, listing) on `searches`, keyed by the saved search,
so a redelivered listing event yields the very same record, which every consumer of `searches` ignores."""

from datetime import UTC, datetime

from schemas.properties import ListingFields
from schemas.searches import SEARCH_SAVED_MATCH
from schemas.topics import SEARCHES
from streams.searches.matcher_app import match_producer
from streams.searches.matching import ListedProperty, SavedSearchHit
from tests.support.topology import RecordingKafkaProducer, kafka_partition

LISTED = ListedProperty(
    property_id="prop-match1",
    version=2,
    event_id="evt-listing-changed",
    correlation_id="cmd-update",
    at=datetime(2026, 11, 30, 9, 15, tzinfo=UTC),
    listing=ListingFields.model_validate(
        {
            "title": "2BHK in Kondapur",
            "location": "Kondapur",
            "price": 8_500_000,
            "propertyType": "APARTMENT",
            "bedrooms": 2,
            "bathrooms": 2,
        }
    ),
    featured=False,
)
HITS = [
    SavedSearchHit(slot=0, saved_search_id="search-k1", owner_id="user-a", name="Kondapur 2BHK"),
    SavedSearchHit(slot=0, saved_search_id="search-k2", owner_id="user-b", name="Under a crore"),
]


async def test_each_match_is_one_event_on_its_saved_searchs_partition_and_a_redelivery_the_same_bytes():
    kafka = RecordingKafkaProducer()
    produce_matches, producer = match_producer(kafka), kafka.recorded
    await produce_matches([(hit, LISTED) for hit in HITS])
    first = producer.to(SEARCHES.name)
    await produce_matches([(hit, LISTED) for hit in HITS])
    again = producer.to(SEARCHES.name)[len(first) :]
    assert [(sent.key, sent.partition) for sent in first] == [
        (hit.saved_search_id.encode(), kafka_partition(SEARCHES.name, hit.saved_search_id.encode())) for hit in HITS
    ]
    for sent, hit in zip(first, HITS, strict=True):
        envelope = sent.envelope
        assert (envelope.type, envelope.subject, envelope.userid) == (
            SEARCH_SAVED_MATCH,
            hit.saved_search_id,
            hit.owner_id,
        )
        assert (envelope.causationid, envelope.data["propertyId"]) == (LISTED.event_id, LISTED.property_id)
    assert [sent.value for sent in again] == [sent.value for sent in first]
    assert len({sent.envelope.id for sent in first}) == len(HITS)
