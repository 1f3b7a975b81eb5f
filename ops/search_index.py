"""The OpenSearch indices behind their aliases: `properties` (listings) and `saved-searches` (percolator).

`python -m ops.search_index` (run by `make prepare`, `make run` and the test setup) makes sure each alias
points at an index of the current mapping version, idempotently:
- no alias yet: create `<alias>-v<version>-<stamp>` and point the alias at it;
- the alias points at an index of an older mapping version: rebuild (`ops/reindex.py`: a new index
  filled from Postgres, then an atomic alias swap; searches keep answering throughout).
Queries, the property search projection and the saved-search projection only ever name the aliases,
so a mapping change is a new index, never an edit of the live one.

Mapping version 3 (over 1; 2 lived only during development): locality synonyms at search time
("Hitech City" = "HITEC City", from `schemas/localities.py`), every spelling of a locality stored as its
name in the `location` keyword (filters and facets agree), "3 BHK" read as "3bhk" in titles and
queries, and the percolator index mapping the same fields.
"""

import argparse
import re
from datetime import UTC, datetime
from typing import Any

import httpx

from config import Settings, get_settings
from schemas.localities import LOCALITIES

MAPPING_VERSION = 3

# Words of the trade people use interchangeably (searched both ways).
_TRADE_SYNONYMS = ("flat, apartment", "bungalow, villa", "office, office space")


def synonym_rules() -> list[str]:
    """One equivalence rule per locality: every spelling people type finds every other."""
    rules = []
    for locality in LOCALITIES:
        names = list(dict.fromkeys(name.lower() for name in locality.names))
        if len(names) > 1:
            rules.append(", ".join(names))
    return [*rules, *_TRADE_SYNONYMS]


def locality_char_filters() -> dict[str, dict[str, str]]:
    """One pattern per locality mapping a whole value written any way ("Hitech City", " hi-tech city")
    to its name ("HITEC City"): the `location` keyword then holds one value per locality, so a filter,
    a facet bucket and a Postgres count of that locality agree whatever spelling a listing used."""
    filters = {"trim": {"type": "pattern_replace", "pattern": "^\\s+|\\s+$", "replacement": ""}}
    for n, locality in enumerate(LOCALITIES):
        spellings = "|".join(re.escape(name) for name in locality.names)
        filters[f"locality_{n}"] = {
            "type": "pattern_replace",
            "pattern": f"(?i)^({spellings})$",
            "replacement": locality.name,
        }
    return filters


def _analysis() -> dict[str, Any]:
    localities = locality_char_filters()
    return {
        "char_filter": {
            # "3 BHK", "3-BHK" and "3BHK" are one word, in listings and in queries alike.
            "bhk": {"type": "pattern_replace", "pattern": "(\\d+)\\s*-?\\s*(?i:bhk)", "replacement": "$1bhk"},
            **localities,
        },
        "filter": {
            "edge_ngram_2_20": {"type": "edge_ngram", "min_gram": 2, "max_gram": 20},
            # Search time only: the index keeps what the owner wrote, the query is widened to every
            # spelling (multi-word synonyms need the graph filter, which works at search time).
            "hyderabad_synonyms": {"type": "synonym_graph", "synonyms": synonym_rules()},
        },
        "analyzer": {
            "listing_index": {
                "type": "custom",
                "char_filter": ["bhk"],
                "tokenizer": "standard",
                "filter": ["lowercase", "asciifolding"],
            },
            "listing_search": {
                "type": "custom",
                "char_filter": ["bhk"],
                "tokenizer": "standard",
                "filter": ["lowercase", "asciifolding", "hyderabad_synonyms"],
            },
            # Suggestions ("gach" -> "Gachibowli ..."): prefixes of words at index time, the plain
            # words at query time, so the query itself is not cut into n-grams.
            "suggest_index": {
                "type": "custom",
                "char_filter": ["bhk"],
                "tokenizer": "standard",
                "filter": ["lowercase", "asciifolding", "edge_ngram_2_20"],
            },
            "suggest_search": {
                "type": "custom",
                "char_filter": ["bhk"],
                "tokenizer": "standard",
                "filter": ["lowercase", "asciifolding"],
            },
        },
        "normalizer": {
            "lowercase": {"type": "custom", "filter": ["lowercase", "asciifolding"]},
            "locality": {"type": "custom", "char_filter": list(localities), "filter": ["lowercase", "asciifolding"]},
        },
    }


_TEXT = {"type": "text", "analyzer": "listing_index", "search_analyzer": "listing_search"}
_SUGGEST = {"type": "text", "analyzer": "suggest_index", "search_analyzer": "suggest_search"}


def property_fields() -> dict[str, Any]:
    """The fields of a listing document (`streams/properties/projection.py` `search_document`)."""
    return {
        "id": {"type": "keyword"},
        "ownerId": {"type": "keyword"},
        "title": {**_TEXT, "fields": {"suggest": _SUGGEST, "raw": {"type": "keyword", "ignore_above": 256}}},
        "description": _TEXT,
        "location": {
            "type": "keyword",
            "normalizer": "locality",
            # `raw`: as the owner wrote it, to show a locality the normaliser does not know.
            "fields": {"text": _TEXT, "suggest": _SUGGEST, "raw": {"type": "keyword", "ignore_above": 256}},
        },
        "propertyType": {"type": "keyword"},
        "price": {"type": "long"},
        "bedrooms": {"type": "integer"},
        "bathrooms": {"type": "integer"},
        "areaSqft": {"type": "integer"},
        "amenities": {"type": "keyword", "normalizer": "lowercase"},
        "attributes": {"type": "flat_object"},
        "geo": {"type": "geo_point"},
        "featured": {"type": "boolean"},
        "imageCount": {"type": "integer"},
        "createdAt": {"type": "date"},
        "updatedAt": {"type": "date"},
        "version": {"type": "long"},
    }


def _settings_body() -> dict[str, Any]:
    return {
        "number_of_shards": 1,
        # One copy on each node in cluster mode, so a node may go without a search going.
        "number_of_replicas": get_settings().opensearch_replicas,
        # Deletes are versioned too: keep their versions long enough to refuse any late stale index request.
        "index.gc_deletes": "1h",
        "analysis": _analysis(),
    }


def properties_index_body() -> dict[str, Any]:
    return {
        "settings": _settings_body(),
        "mappings": {
            "dynamic": "strict",
            "_meta": {"mappingVersion": MAPPING_VERSION},
            "properties": property_fields(),
        },
    }


def saved_searches_index_body() -> dict[str, Any]:
    """Saved searches as percolator queries. A percolated listing is analysed with this index's mapping,
    so it maps the listing fields exactly as `properties` does (same analyzers, same synonyms)."""
    return {
        "settings": _settings_body(),
        "mappings": {
            "dynamic": "strict",
            "_meta": {"mappingVersion": MAPPING_VERSION},
            "properties": {
                **property_fields(),
                "query": {"type": "percolator"},
                "savedSearchId": {"type": "keyword"},
                "name": {"type": "keyword", "index": False},
                "savedAt": {"type": "date"},
            },
        },
    }


BODIES = {"properties": properties_index_body, "saved-searches": saved_searches_index_body}


def new_index_name(alias: str) -> str:
    """`properties-v2-20250101t120000123`: the mapping version, then when it was built."""
    stamp = datetime.now(UTC).strftime("%Y%m%dt%H%M%S%f")[:-3]
    return f"{alias}-v{MAPPING_VERSION}-{stamp}"


def alias_indices(client: httpx.Client, alias: str) -> list[str]:
    answer = client.get(f"/_alias/{alias}")
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    return sorted(answer.json())


def mapping_version(client: httpx.Client, index: str) -> int:
    answer = client.get(f"/{index}/_mapping")
    answer.raise_for_status()
    meta = answer.json()[index]["mappings"].get("_meta") or {}
    return int(meta.get("mappingVersion", 1))


def create_index(client: httpx.Client, index: str, body: dict[str, Any]) -> None:
    client.put(f"/{index}", json=body).raise_for_status()


def ensure_index(kind: str, alias: str, settings: Settings | None = None) -> list[str]:
    """Point `alias` at an index of the current mapping (`kind`: properties | saved-searches); returns
    what it did. An index of an older mapping is rebuilt and swapped in (`ops.reindex`)."""
    settings = settings or get_settings()
    from ops.reindex import advisory_lock, reindex  # the rebuild needs Postgres; the check does not

    with httpx.Client(base_url=settings.opensearch_url, timeout=30) as client:
        current = alias_indices(client, alias)
        if len(current) == 1 and mapping_version(client, current[0]) >= MAPPING_VERSION:
            return []
    # Several processes may prepare at once (test sessions, `make run`): one builds, the others wait.
    with advisory_lock(settings, f"search-index:{alias}"):
        with httpx.Client(base_url=settings.opensearch_url, timeout=30) as client:
            current = alias_indices(client, alias)
            if not current:
                index = new_index_name(alias)
                create_index(client, index, BODIES[kind]())
                client.post(
                    "/_aliases", json={"actions": [{"add": {"index": index, "alias": alias, "is_write_index": True}}]}
                ).raise_for_status()
                return [f"created index {index}", f"alias {alias} -> {index}"]
            if len(current) == 1 and mapping_version(client, current[0]) >= MAPPING_VERSION:
                return []
        report = reindex(kind, alias, settings=settings)
    return [f"rebuilt {report.summary()}"]


def ensure_properties_index(settings: Settings | None = None, alias: str | None = None) -> list[str]:
    settings = settings or get_settings()
    return ensure_index("properties", alias or settings.opensearch_properties_alias, settings)


def ensure_saved_searches_index(settings: Settings | None = None, alias: str | None = None) -> list[str]:
    settings = settings or get_settings()
    return ensure_index("saved-searches", alias or settings.opensearch_saved_searches_alias, settings)


def ensure_search_indices(settings: Settings | None = None) -> list[str]:
    return [*ensure_properties_index(settings), *ensure_saved_searches_index(settings)]


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    done = ensure_search_indices()
    print(f"search indices: {', '.join(done) if done else 'already there'}")


if __name__ == "__main__":
    main()
