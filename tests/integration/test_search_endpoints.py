"""The eight search endpoints against the real stack: 1,000 demo listings through the property service,
the property search projection into a test alias, the search projection and the saved-search matcher
under test groups, and the search service. Counts are checked against Postgres, the store the index
is built from; saved-search alerts are read back from the `searches` topic."""

import asyncio
import math
import random
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from api.common.kafka import parse_consistency_token
from config import get_settings
from ops.reindex import reindex
from ops.search_index import alias_indices
from schemas.codec import decode, encode
from schemas.envelope import new_event
from schemas.personal import SEARCH_NAME, new_personal_key, unseal
from schemas.searches import SEARCH_SAVED_MATCH
from schemas.topics import SEARCHES, USERS
from schemas.users import USER_DELETED
from streams.searches.matching import matches_checkpoint
from tests.support.search import CONSISTENCY, SearchSlice, bearer, create_corpus, create_listing, running_search_slice
from tests.support.waiting import eventually

CORPUS = 1000
LIVE = "NOT deleted AND title IS NOT NULL"


@pytest.fixture(scope="module")
async def search(stack, tmp_path_factory):
    async with running_search_slice(tmp_path_factory.mktemp("search-slice"), stack.as_env()) as slice_:
        yield slice_


@pytest.fixture(scope="module")
async def api(search: SearchSlice):
    async with search.client() as client:
        yield client


@pytest.fixture(scope="module")
async def corpus(search: SearchSlice, api, settings):
    """1,000 demo listings of a seed of this run, by this run's owners; searchable before any test runs."""
    ids = await create_corpus(search, CORPUS, seed=random.randrange(10**6, 10**9))
    async with await psycopg.AsyncConnection.connect(settings.postgres_dsn, autocommit=True) as conn:
        await until_index_matches_postgres(api, conn, search, at_least=CORPUS)
    return ids


def owners(search: SearchSlice) -> str:
    return f"user-{search.run}-%"


async def pg_count(pg, search: SearchSlice, where: str = "true", params: tuple = ()) -> int:
    cursor = await pg.execute(
        f"SELECT count(*) FROM properties WHERE owner_id LIKE %s AND {LIVE} AND {where}",
        (owners(search), *params),
    )
    return (await cursor.fetchone())[0]


async def pg_groups(pg, search: SearchSlice, column: str, where: str = "true", params: tuple = ()) -> dict:
    cursor = await pg.execute(
        f"SELECT {column}, count(*) FROM properties WHERE owner_id LIKE %s AND {LIVE} AND {where} GROUP BY 1",
        (owners(search), *params),
    )
    return dict(await cursor.fetchall())


async def until_index_matches_postgres(api, pg, search: SearchSlice, at_least: int = 0) -> None:
    """Both projections are eventually consistent: wait until the index holds what Postgres holds."""

    async def totals() -> tuple[int, int]:
        found = (await api.get("/api/search/filters")).json()["data"]["total"]
        return found, await pg_count(pg, search)

    await eventually(totals, lambda both: both[0] == both[1] >= at_least, within=120)


def counts(facet: list[dict[str, Any]], key: str = "value") -> dict:
    return {entry[key]: entry["count"] for entry in facet}


# ---- relevance, filters and facets ----


async def test_3bhk_gachibowli_ranks_3_bedroom_gachibowli_listings_first(api, corpus, pg, search):
    answer = await api.get("/api/search/properties", params={"q": "3BHK Gachibowli", "limit": 10})
    assert answer.status_code == 200, answer.text
    items = answer.json()["data"]["items"]
    assert (items[0]["location"], items[0]["bedrooms"]) == ("Gachibowli", 3)
    expected = await pg_count(pg, search, "location = 'Gachibowli' AND bedrooms = 3")
    top = [(item["location"], item["bedrooms"]) for item in items[: min(10, expected)]]
    assert top == [("Gachibowli", 3)] * len(top)
    assert answer.json()["data"]["sort"] == "relevance" and items[0]["score"] > 0


async def test_filter_values_and_counts_equal_postgres(api, corpus, pg, search):
    await until_index_matches_postgres(api, pg, search)
    data = (await api.get("/api/search/filters")).json()["data"]
    assert data["total"] == await pg_count(pg, search)
    assert counts(data["localities"], "name") == await pg_groups(pg, search, "location")
    assert counts(data["propertyTypes"]) == await pg_groups(pg, search, "property_type")
    assert counts(data["bedrooms"]) == await pg_groups(pg, search, "bedrooms")
    assert counts(data["bathrooms"]) == await pg_groups(pg, search, "bathrooms")
    for band in data["priceRanges"]:
        high = band["max"] if band["max"] is not None else 10**15
        assert band["count"] == await pg_count(pg, search, "price BETWEEN %s AND %s", (band["min"], high)), band
    cursor = await pg.execute(
        f"SELECT min(price), max(price) FROM properties WHERE owner_id LIKE %s AND {LIVE}", (owners(search),)
    )
    assert tuple(data["price"].values()) == await cursor.fetchone()


async def test_filtered_search_totals_and_facets_equal_postgres(api, corpus, pg, search):
    await until_index_matches_postgres(api, pg, search)
    params = {"location": "Kondapur", "propertyType": "APARTMENT", "minPrice": 5_000_000, "maxPrice": 20_000_000}
    data = (await api.get("/api/search/properties", params=params)).json()["data"]
    where = "location = 'Kondapur' AND property_type = 'APARTMENT' AND price BETWEEN 5000000 AND 20000000"
    assert data["total"] == await pg_count(pg, search, where) > 0
    assert counts(data["facets"]["bedrooms"]) == await pg_groups(pg, search, "bedrooms", where)
    assert counts(data["facets"]["location"]) == {"Kondapur": data["total"]}
    assert all(item["location"] == "Kondapur" and item["propertyType"] == "APARTMENT" for item in data["items"])
    exact = (await api.get("/api/search/properties", params={**params, "bedrooms": 3, "bathrooms": 3})).json()
    both = where + " AND bedrooms = 3 AND bathrooms = 3"
    assert exact["data"]["total"] == await pg_count(pg, search, both)


async def test_advanced_search_ranges_amenities_and_exclusions_equal_postgres(api, corpus, pg, search):
    await until_index_matches_postgres(api, pg, search)
    body = {
        "filters": {"propertyType": ["APARTMENT", "VILLA"]},
        "exclude": {"location": ["Kokapet", "Hitech City"]},
        "price": {"max": 30_000_000},
        "area": {"min": 1200, "max": 4000},
        "bedrooms": {"min": 2, "max": 4},
        "amenities": {"all": ["gym"], "any": ["swimming pool", "clubhouse"]},
        "facets": ["location", "price"],
        "sort": "price_desc",
    }
    answer = await api.post("/api/search/advanced", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    where = (
        "property_type IN ('APARTMENT', 'VILLA') AND location NOT IN ('Kokapet', 'HITEC City')"
        " AND price <= 30000000 AND area_sqft BETWEEN 1200 AND 4000 AND bedrooms BETWEEN 2 AND 4"
        " AND 'gym' = ANY(amenities) AND amenities && ARRAY['swimming pool', 'clubhouse']"
    )
    assert data["total"] == await pg_count(pg, search, where) > 0
    assert counts(data["facets"]["location"]) == await pg_groups(pg, search, "location", where)
    assert "bedrooms" not in data["facets"]  # only the facets asked for
    prices = [item["price"] for item in data["items"]]
    assert prices == sorted(prices, reverse=True)


def km_between(lat1, lon1, lat2, lon2) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


async def test_near_finds_the_listings_within_the_distance(api, corpus, pg, search):
    await until_index_matches_postgres(api, pg, search)
    centre = {"lat": 17.4647, "lon": 78.3636, "km": 3.0}  # Kondapur
    found: list[dict] = []
    body: dict[str, Any] = {"near": centre, "limit": 100}
    while True:
        data = (await api.post("/api/search/advanced", json=body)).json()["data"]
        found += data["items"]
        if data["nextCursor"] is None:
            break
        body["cursor"] = data["nextCursor"]
    assert len(found) == len({item["id"] for item in found}) == data["total"]
    cursor = await pg.execute(
        f"SELECT id, latitude, longitude FROM properties WHERE owner_id LIKE %s AND {LIVE} AND latitude IS NOT NULL",
        (owners(search),),
    )
    distances = {row[0]: km_between(centre["lat"], centre["lon"], row[1], row[2]) for row in await cursor.fetchall()}
    returned = {item["id"] for item in found}
    assert all(distances[i] <= centre["km"] * 1.001 for i in returned)
    assert {i for i, km in distances.items() if km < centre["km"] * 0.999} <= returned
    assert returned


async def test_locality_synonyms_find_the_same_listings(api, corpus, pg, search):
    spellings = ["HITEC City", "Hitech City", "hi-tech city", "Cyberabad"]
    answers = [(await api.get("/api/search/properties", params={"q": s, "limit": 5})).json()["data"] for s in spellings]
    assert len({a["total"] for a in answers}) == 1 and answers[0]["total"] > 0
    assert {a["items"][0]["location"] for a in answers} == {"HITEC City"}
    by_filter = (await api.get("/api/search/properties", params={"location": "Hitech City"})).json()["data"]
    assert by_filter["total"] == await pg_count(pg, search, "location = 'HITEC City'")


async def test_price_sorted_pages_walk_every_match_in_order(api, corpus, pg, search):
    params = {"location": "Madhapur", "sort": "price_asc", "limit": 7, "facets": "false"}
    seen: list[dict] = []
    cursor = None
    while True:
        page = await api.get("/api/search/properties", params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        data = page.json()["data"]
        assert "facets" not in data
        seen += data["items"]
        cursor = data["nextCursor"]
        if cursor is None:
            break
    rows = await pg.execute(
        f"SELECT id FROM properties WHERE owner_id LIKE %s AND {LIVE} AND location = 'Madhapur' ORDER BY price, id",
        (owners(search),),
    )
    assert [item["id"] for item in seen] == [row[0] for row in await rows.fetchall()]


async def test_a_cursor_of_another_search_is_refused(api, corpus):
    first = (await api.get("/api/search/properties", params={"location": "Kokapet", "limit": 2})).json()["data"]
    other = await api.get("/api/search/properties", params={"location": "Kondapur", "cursor": first["nextCursor"]})
    assert other.status_code == 400 and other.json()["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"minPrice": 5, "maxPrice": 4}, "maxPrice"),
        ({"minPrice": -1}, "minPrice"),
        ({"propertyType": "CASTLE"}, "propertyType"),
        ({"bedrooms": 51}, "bedrooms"),
        ({"sort": "cheapest"}, "sort"),
        ({"limit": 101}, "limit"),
        ({"q": "x" * 201}, "q"),
    ],
)
async def test_bad_search_parameters_are_422_naming_the_field(api, params, field):
    answer = await api.get("/api/search/properties", params=params)
    assert answer.status_code == 422, answer.text
    assert field in [error["field"] for error in answer.json()["errors"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"price": {"min": 10, "max": 5}}, "price.max"),
        ({"near": {"lat": 91, "lon": 78.3, "km": 2}}, "near.lat"),
        ({"filters": {"propertyType": ["CASTLE"]}}, "filters.propertyType[0]"),
        ({"amenities": {"all": [""]}}, "amenities.all"),
        ({"facets": ["colour"]}, "facets[0]"),
        ({"radius": 5}, "radius"),
    ],
)
async def test_bad_advanced_bodies_are_422_naming_the_field(api, body, field):
    answer = await api.post("/api/search/advanced", json=body)
    assert answer.status_code == 422, answer.text
    assert field in [error["field"] for error in answer.json()["errors"]]


async def test_suggestions_offer_localities_with_counts_then_titles(api, corpus, pg, search):
    answer = await api.get("/api/search/suggestions", params={"q": "gach"})
    assert answer.status_code == 200, answer.text
    items = answer.json()["data"]["items"]
    assert items[0] == {
        "kind": "locality",
        "text": "Gachibowli",
        "count": await pg_count(pg, search, "location = 'Gachibowli'"),
    }
    titles = [item["text"] for item in items if item["kind"] == "title"]
    assert titles and all("gach" in title.lower() for title in titles)
    assert len(titles) == len(set(titles))
    synonym = (await api.get("/api/search/suggestions", params={"q": "hitech"})).json()["data"]["items"]
    assert synonym[0]["kind"] == "locality" and synonym[0]["text"] == "HITEC City"
    assert (await api.get("/api/search/suggestions")).json()["errors"][0]["field"] == "q"
    assert (await api.get("/api/search/suggestions", params={"q": "gach", "limit": 0})).status_code == 422


# ---- read your writes ----


async def an_apartment_titled(search: SearchSlice, word: str, bedrooms: int, locality: str, price: int):
    """A new listing whose title holds `word`, found by no other search; the create's answer."""
    return await create_listing(
        search,
        search.owner(1),
        {"title": f"{word} {bedrooms}BHK in {locality}", "location": locality, "price": price}
        | {"propertyType": "APARTMENT", "bedrooms": bedrooms, "bathrooms": 2},
    )


async def searched_with_token(api, word: str, made) -> httpx.Response:
    return await api.get("/api/search/properties", params={"q": word}, headers={CONSISTENCY: made.headers[CONSISTENCY]})


async def test_a_new_listing_is_found_at_once_with_its_consistency_token(api, search):
    word = f"Zenith{uuid.uuid4().hex[:8]}"
    made = await an_apartment_titled(search, word, 3, "Kondapur", 9_000_000)
    found = await searched_with_token(api, word, made)
    assert found.status_code == 200 and "X-Consistency" not in found.headers
    assert [item["id"] for item in found.json()["data"]["items"]] == [made.json()["data"]["id"]]


async def test_an_anonymous_search_shares_its_answer_for_a_moment_then_sees_the_new_listing(api, search, settings):
    """Anonymous answers are shared for `HI_SHARED_ANSWER_SECONDS` (api/common/shared_answers.py); a token
    search is never served a shared answer, and the anonymous one catches up once that moment is over."""
    word = f"Nadir{uuid.uuid4().hex[:8]}"
    before = await api.get("/api/search/properties", params={"q": word})
    assert before.json()["data"]["items"] == []
    made = await an_apartment_titled(search, word, 2, "Miyapur", 6_000_000)
    with_token = await searched_with_token(api, word, made)
    assert [item["id"] for item in with_token.json()["data"]["items"]] == [made.json()["data"]["id"]]
    anonymous = await eventually(
        lambda: api.get("/api/search/properties", params={"q": word}),
        lambda answer: answer.json()["data"]["total"] == 1,
        within=settings.shared_answer_seconds + 10,
    )
    assert anonymous.headers["x-correlation-id"] != before.headers["x-correlation-id"]


# ---- history ----


async def test_a_signed_in_search_is_in_the_users_history_newest_first(api, search):
    user = search.owner(2)
    first = await api.get("/api/search/properties", params={"q": "villa"}, headers=bearer(user))
    second = await api.post(
        "/api/search/advanced", json={"q": "lake view", "price": {"max": 9_000_000}}, headers=bearer(user)
    )
    anonymous = await api.get("/api/search/properties", params={"q": "plot"})
    assert CONSISTENCY not in anonymous.headers
    token = {CONSISTENCY: second.headers[CONSISTENCY], **bearer(user)}
    history = await api.get(f"/api/search/history/{user}", headers=token)
    assert history.status_code == 200, history.text
    items = history.json()["data"]["items"]
    assert [(item["query"], item["filters"], item["resultCount"]) for item in items] == [
        ("lake view", {"price": {"max": 9_000_000}}, second.json()["data"]["total"]),
        ("villa", {}, first.json()["data"]["total"]),
    ]
    paged = (await api.get(f"/api/search/history/{user}", params={"limit": 1}, headers=bearer(user))).json()["data"]
    assert len(paged["items"]) == 1 and paged["nextCursor"]


async def test_history_is_for_the_user_themselves_or_an_admin(api, search):
    user = search.owner(3)
    assert (await api.get(f"/api/search/history/{user}")).status_code == 401
    assert (await api.get(f"/api/search/history/{user}", headers=bearer(search.owner(4)))).status_code == 403
    admin = bearer(f"user-admin-{search.run}", "ADMIN")
    missing = await api.get("/api/search/history/user-nobody-here", headers=admin)
    assert missing.status_code == 404
    bad = await api.get("/api/search/history/bob", headers=bearer(user))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "userId"


# ---- saved searches ----

KONDAPUR_UNDER_A_CRORE = {"filters": {"location": ["Kondapur"]}, "price": {"max": 10_000_000}, "bedrooms": {"min": 2}}


async def save(api, user: str, name: str = "Kondapur, under a crore", criteria=KONDAPUR_UNDER_A_CRORE):
    answer = await api.post("/api/search/save", json={"name": name, "criteria": criteria}, headers=bearer(user))
    assert answer.status_code == 201, answer.text
    return answer


async def test_a_saved_search_is_listed_shown_and_deleted_by_its_owner(api, search):
    owner, stranger = search.owner(5), search.owner(6)
    saved = await save(api, owner)
    search_id = saved.json()["data"]["id"]
    assert saved.headers["Location"] == f"/api/search/saved/{search_id}" and search_id.startswith("search-")
    token = {CONSISTENCY: saved.headers[CONSISTENCY]}
    listed = await api.get(f"/api/search/saved/{owner}", headers={**token, **bearer(owner)})
    assert listed.status_code == 200 and "X-Consistency" not in listed.headers
    assert [(s["id"], s["name"], s["criteria"]) for s in listed.json()["data"]["items"]] == [
        (search_id, "Kondapur, under a crore", KONDAPUR_UNDER_A_CRORE)
    ]
    one = await api.get(saved.headers["Location"], headers=bearer(owner))
    assert one.status_code == 200 and one.json()["data"]["ownerId"] == owner
    assert (await api.get(saved.headers["Location"], headers=bearer(stranger))).status_code == 403
    assert (await api.get(f"/api/search/saved/{owner}", headers=bearer(stranger))).status_code == 403
    assert (await api.delete(f"/api/search/saved/{search_id}", headers=bearer(stranger))).status_code == 403
    deleted = await api.delete(f"/api/search/saved/{search_id}", headers=bearer(owner))
    assert deleted.status_code == 200, deleted.text
    token = {CONSISTENCY: deleted.headers[CONSISTENCY], **bearer(owner)}
    assert (await api.get(f"/api/search/saved/{owner}", headers=token)).json()["data"]["items"] == []
    assert (await api.get(saved.headers["Location"], headers=token)).status_code == 404
    assert (await api.delete(f"/api/search/saved/{search_id}", headers=bearer(owner))).status_code == 404


async def test_saved_searches_need_a_token_unknown_ones_are_404_and_bad_ids_422(api, search):
    body = {"name": "x", "criteria": KONDAPUR_UNDER_A_CRORE}
    assert (await api.post("/api/search/save", json=body)).status_code == 401
    assert (await api.get(f"/api/search/saved/{search.owner(7)}")).status_code == 401
    assert (await api.delete("/api/search/saved/search-abc")).status_code == 401
    assert (await api.get("/api/search/saved/search-nosuch", headers=bearer(search.owner(7)))).status_code == 404
    assert (await api.delete("/api/search/saved/search-nosuch", headers=bearer(search.owner(7)))).status_code == 404
    admin = bearer(f"user-admin-{search.run}", "ADMIN")
    assert (await api.get("/api/search/saved/user-nobody-here", headers=admin)).status_code == 404
    bad_id = await api.delete("/api/search/saved/bob", headers=bearer(search.owner(7)))
    assert bad_id.status_code == 422 and bad_id.json()["errors"][0]["field"] == "savedSearchId"
    bad_owner = await api.get("/api/search/saved/bob", headers=bearer(search.owner(7)))
    assert bad_owner.status_code == 422 and bad_owner.json()["errors"][0]["field"] == "userId"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "criteria": {"q": "villa"}}, "name"),
        ({"name": "x", "criteria": {}}, "criteria"),
        ({"name": "x", "criteria": {"price": {"min": 9, "max": 1}}}, "criteria.price.max"),
        ({"name": "x", "criteria": {"bedrooms": {"min": "two"}}}, "criteria.bedrooms.min"),
        ({"name": "x"}, "criteria"),
        ({"name": "x", "criteria": {"q": "villa"}, "owner": "someone"}, "owner"),
    ],
)
async def test_bad_saves_are_422_naming_the_field(api, search, body, field):
    answer = await api.post("/api/search/save", json=body, headers=bearer(search.owner(8)))
    assert answer.status_code == 422, answer.text
    assert field in [error["field"] for error in answer.json()["errors"]]


async def test_the_saved_search_limit_is_409_and_an_idempotent_retry_saves_once(api, search):
    user = search.owner(9)
    headers = {**bearer(user), "Idempotency-Key": f"save-{search.run}"}
    body = {"name": "villas", "criteria": {"filters": {"propertyType": ["VILLA"]}}}
    first = await api.post("/api/search/save", json=body, headers=headers)
    again = await api.post("/api/search/save", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["data"]["id"] == again.json()["data"]["id"] and again.headers["Idempotent-Replay"] == "true"
    second = await save(api, user, "two")
    third = await save(api, user, "three")
    token = {CONSISTENCY: ",".join(a.headers[CONSISTENCY] for a in (second, third)), **bearer(user)}
    listed = (await api.get(f"/api/search/saved/{user}", headers=token)).json()["data"]["items"]
    assert len(listed) == 3  # the service under test allows three
    over = await api.post("/api/search/save", json={"name": "four", "criteria": {"q": "plot"}}, headers=bearer(user))
    assert over.status_code == 409, over.text


# ---- alerts: the percolator ----


class SearchesTail:
    """The `searches` topic from the moment it is created: what the matcher produces from then on."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.events: list = []

    @classmethod
    async def start(cls, bootstrap: str) -> "SearchesTail":
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        partitions = [TopicPartition(SEARCHES.name, p) for p in range(SEARCHES.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)
        return cls(consumer)

    async def matches_for(self, saved_search_id: str) -> list:
        batch = await self.consumer.getmany(timeout_ms=200)
        for messages in batch.values():
            self.events += [decode(message.value) for message in messages]
        return [e for e in self.events if e.type == SEARCH_SAVED_MATCH and e.subject == saved_search_id]


async def matcher_passed(pg, search: SearchSlice, answer) -> None:
    """The test matcher has reacted to the event behind a property command's answer."""
    [position] = parse_consistency_token(answer.headers[CONSISTENCY])

    async def applied() -> int:
        cursor = await pg.execute(
            'SELECT "offset" FROM projection_checkpoints WHERE projection = %s AND topic = %s AND partition = %s',
            (matches_checkpoint(search.matcher_group), position.topic, position.partition),
        )
        row = await cursor.fetchone()
        return -1 if row is None else row[0]

    await eventually(applied, lambda offset: offset >= position.offset, within=30)


async def test_a_saved_search_gets_exactly_one_alert_for_a_listing_that_fits(api, search, pg, settings):
    # The lister is not one of the run's owners: these listings stay out of the corpus the counts compare.
    owner, lister = search.owner(10), f"user-p{search.run}"
    # The owner has a personal key, as a registered user does: the alert carries their search's name sealed.
    key = new_personal_key()
    await pg.execute("INSERT INTO user_keys (user_id, key) VALUES (%s, %s)", (owner, key))
    saved = await save(api, owner)
    search_id = saved.json()["data"]["id"]
    # Listed with the token: the projection has registered it in the percolator too.
    ready = await api.get(saved.headers["Location"], headers={CONSISTENCY: saved.headers[CONSISTENCY], **bearer(owner)})
    assert ready.status_code == 200 and "X-Consistency" not in ready.headers
    tail = await SearchesTail.start(settings.kafka_bootstrap)
    try:
        base = {"propertyType": "APARTMENT", "bathrooms": 2, "description": "Near Botanical Garden"}
        too_dear = await create_listing(
            search,
            lister,
            {**base, "title": "3BHK in Kondapur", "location": "Kondapur", "price": 12_000_000} | {"bedrooms": 3},
        )
        too_small = await create_listing(
            search,
            lister,
            {**base, "title": "1BHK in Kondapur", "location": "Kondapur", "price": 4_000_000} | {"bedrooms": 1},
        )
        elsewhere = await create_listing(
            search,
            lister,
            {**base, "title": "2BHK in Kokapet", "location": "Kokapet", "price": 8_000_000} | {"bedrooms": 2},
        )
        fits = await create_listing(
            search,
            lister,
            {**base, "title": "2BHK in Kondapur", "location": "Kondapur Village", "price": 10_000_000}
            | {"bedrooms": 2},
        )
        fits_id = fits.json()["data"]["id"]
        # A change that still fits is no second alert.
        async with search.properties.client() as client:
            changed = await client.put(f"/api/properties/{fits_id}", json={"price": 9_500_000}, headers=bearer(lister))
        assert changed.status_code == 200, changed.text
        matches = await eventually(lambda: tail.matches_for(search_id), lambda found: len(found) >= 1, within=30)
        for answer in (too_dear, too_small, elsewhere, fits, changed):
            await matcher_passed(pg, search, answer)
        matches = await tail.matches_for(search_id)
    finally:
        await tail.consumer.stop()
        await pg.execute("DELETE FROM user_keys WHERE user_id = %s", (owner,))
    assert len(matches) == 1, matches
    [match] = matches
    assert match.userid == owner
    sealed_name = match.data.pop("searchName")
    assert unseal(key, owner, SEARCH_NAME, sealed_name) == "Kondapur, under a crore"
    # The matcher alerts on the newest state of a listing in its batch: when the change arrives in the
    # same batch as the creation, the one alert tells of the changed price.
    assert match.data.pop("price") in (10_000_000, 9_500_000)
    assert match.data == {
        "savedSearchId": search_id,
        "userId": owner,
        "propertyId": fits_id,
        "title": "2BHK in Kondapur",
        "location": "Kondapur Village",
        "bedrooms": 2,
    }


# ---- erasure ----


async def test_a_deleted_users_saved_searches_and_history_are_erased(api, search, producer, pg):
    user = search.owner(12)
    saved = await save(api, user, "Erase me", {"q": "penthouse"})
    searched = await api.get("/api/search/properties", params={"q": "penthouse"}, headers=bearer(user))
    token = {CONSISTENCY: f"{saved.headers[CONSISTENCY]},{searched.headers[CONSISTENCY]}", **bearer(user)}
    assert len((await api.get(f"/api/search/history/{user}", headers=token)).json()["data"]["items"]) == 1
    saved_id = saved.json()["data"]["id"]
    async with httpx.AsyncClient(base_url=get_settings().opensearch_url) as opensearch:

        async def percolator_query() -> httpx.Response:
            return await opensearch.get(f"/{search.saved_alias}/_doc/{saved_id}")

        # Registered first: "not found" below then speaks of this very query in this alias, not a wrong address.
        await eventually(percolator_query, lambda answer: answer.status_code == 200 and answer.json()["found"])
        event = new_event(type=USER_DELETED, subject=user, data={}, service="tests", userid=user, sequence=2)
        await (await producer.send(USERS.name, encode(event), key=user.encode()))

        async def left() -> tuple:
            cursor = await pg.execute(
                "SELECT (SELECT count(*) FROM saved_searches"
                " WHERE owner_id = %s AND (name IS NOT NULL OR NOT deleted)),"
                " (SELECT count(*) FROM search_history WHERE user_id = %s)",
                (user, user),
            )
            return await cursor.fetchone()

        assert await eventually(left, lambda found: found == (0, 0), within=30) == (0, 0)
        admin = bearer(f"user-admin-{search.run}", "ADMIN")
        assert (await api.get(saved.headers["Location"], headers=admin)).status_code == 404
        # The alias answers for the document (404, `found: false`), not with an error (no such index, a 5xx).
        gone = await eventually(percolator_query, lambda answer: answer.status_code == 404)
    assert (gone.json()["found"], gone.json()["_id"]) == (False, saved_id)


# ---- zero-downtime reindex ----


async def test_reindex_during_continuous_searching_fails_no_search_and_changes_no_result(api, corpus, pg, search):
    await until_index_matches_postgres(api, pg, search)
    asks = [
        ("GET", "/api/search/properties", {"params": {"q": "3BHK Gachibowli", "limit": 100}}),
        ("GET", "/api/search/properties", {"params": {"location": "Kondapur", "sort": "price_asc"}}),
        ("POST", "/api/search/advanced", {"json": {"bedrooms": {"min": 3}, "facets": ["location"], "limit": 50}}),
        ("GET", "/api/search/filters", {}),
    ]

    def result(n: int, answer: httpx.Response) -> Any:
        """What a user gets. Relevance scores come from the index's term statistics, which a fresh index
        recomputes (the old one also counts documents updated or deleted since), so for the relevance
        search (every match on one page) the same listings and counts are the same result."""
        body = answer.json()
        if n == 0:
            data = body["data"]
            return data["total"], data["facets"], sorted(item["id"] for item in data["items"])
        return body

    async def answers() -> list:
        return [result(n, await api.request(method, path, **kwargs)) for n, (method, path, kwargs) in enumerate(asks)]

    before = await answers()
    assert 0 < before[0][0] <= 100
    old = alias_indices_now(search)
    tally = {"searches": 0, "failed": 0, "different": 0}
    differences: list = []
    done = asyncio.Event()

    async def keep_searching() -> None:
        while not done.is_set():
            for n, (method, path, kwargs) in enumerate(asks):
                try:
                    answer = await api.request(method, path, **kwargs)
                except httpx.HTTPError:
                    tally["failed"] += 1
                    continue
                tally["searches"] += 1
                if answer.status_code != 200:
                    tally["failed"] += 1
                elif result(n, answer) != before[n]:
                    tally["different"] += 1
                    differences.append((n, result(n, answer)))

    searchers = [asyncio.create_task(keep_searching()) for _ in range(2)]
    try:
        report = await asyncio.to_thread(reindex, "properties", search.properties_alias)
    finally:
        done.set()
        await asyncio.gather(*searchers)
    assert report.old == old and alias_indices_now(search) == [report.new] != old
    assert tally["searches"] > 0
    assert (tally["failed"], tally["different"]) == (0, 0), (tally, differences[:1], before)
    assert await answers() == before


def alias_indices_now(search: SearchSlice) -> list[str]:
    with httpx.Client(base_url=get_settings().opensearch_url) as client:
        return alias_indices(client, search.properties_alias)
