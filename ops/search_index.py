"""Create the OpenSearch `properties` index behind its alias, idempotently.

`python -m ops.search_index` (run by `make prepare`, `make run` and the test setup). Queries and the
projection only ever name the alias (`properties`); the index itself is versioned (`properties-v1`), so
a mapping change is a new index filled by a replay of the projection, then an alias swap.
"""

import argparse
from typing import Any

import httpx

from config import Settings, get_settings

# Suggestions ("Gach" -> "Gachibowli ...") match prefixes of words: an edge n-gram analyser at index
# time, the plain analyser at query time so the query itself is not cut into n-grams.
PROPERTIES_INDEX_BODY: dict[str, Any] = {
    "settings": {
        "number_of_shards": 1,
        "number_of_replicas": 0,
        # Deletes are versioned too: keep their versions long enough to refuse any late stale index request.
        "index.gc_deletes": "1h",
        "analysis": {
            "filter": {"edge_ngram_2_20": {"type": "edge_ngram", "min_gram": 2, "max_gram": 20}},
            "analyzer": {
                "suggest_index": {
                    "type": "custom",
                    "tokenizer": "standard",
                    "filter": ["lowercase", "asciifolding", "edge_ngram_2_20"],
                },
                "suggest_search": {"type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"]},
            },
            "normalizer": {"lowercase": {"type": "custom", "filter": ["lowercase", "asciifolding"]}},
        },
    },
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "id": {"type": "keyword"},
            "ownerId": {"type": "keyword"},
            "title": {
                "type": "text",
                "fields": {
                    "suggest": {"type": "text", "analyzer": "suggest_index", "search_analyzer": "suggest_search"},
                    "raw": {"type": "keyword", "ignore_above": 256},
                },
            },
            "description": {"type": "text"},
            "location": {
                "type": "keyword",
                "normalizer": "lowercase",
                "fields": {
                    "text": {"type": "text"},
                    "suggest": {"type": "text", "analyzer": "suggest_index", "search_analyzer": "suggest_search"},
                },
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
        },
    },
}


def ensure_properties_index(settings: Settings | None = None) -> list[str]:
    """Create the index and point the alias at it when missing; returns what it did."""
    settings = settings or get_settings()
    alias, index = settings.opensearch_properties_alias, settings.opensearch_properties_index
    done = []
    with httpx.Client(base_url=settings.opensearch_url, timeout=30) as client:
        if client.head(f"/{index}").status_code == 404:
            response = client.put(f"/{index}", json=PROPERTIES_INDEX_BODY)
            # Another process may have created it between the check and the create.
            if response.status_code != 400 or "resource_already_exists" not in response.text:
                response.raise_for_status()
                done.append(f"created index {index}")
        if client.head(f"/_alias/{alias}").status_code == 404:
            client.post(
                "/_aliases", json={"actions": [{"add": {"index": index, "alias": alias, "is_write_index": True}}]}
            ).raise_for_status()
            done.append(f"alias {alias} -> {index}")
    return done


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    done = ensure_properties_index()
    print(f"search index: {', '.join(done) if done else 'already there'}")


if __name__ == "__main__":
    main()
