"""The search index definitions: synonyms and locality spellings come from `schemas/localities.py`, and
the percolator index maps the listing fields exactly as the listings index does."""

import re

from ops.reindex import _built_at
from ops.search_index import (
    locality_char_filters,
    properties_index_body,
    saved_searches_index_body,
    synonym_rules,
)


def test_every_locality_with_other_spellings_is_one_synonym_rule():
    rules = synonym_rules()
    assert "hitec city, hitech city, hi-tech city, hitec, cyberabad" in rules
    assert all("," in rule for rule in rules)


def test_each_spelling_of_a_locality_is_stored_as_its_name():
    filters = locality_char_filters()
    hitec = next(f for f in filters.values() if f.get("replacement") == "HITEC City")
    # Java and Python agree on this much regex: case-insensitive, whole value.
    pattern = re.compile(hitec["pattern"].replace("(?i)", ""), re.IGNORECASE)
    assert pattern.fullmatch("Hi-Tech City") and pattern.fullmatch("cyberabad")
    assert not pattern.fullmatch("Hitech City Phase 2")


def test_the_percolator_maps_the_listing_fields_as_the_listings_index_does():
    listings = properties_index_body()
    percolator = saved_searches_index_body()
    assert percolator["settings"]["analysis"] == listings["settings"]["analysis"]
    fields = percolator["mappings"]["properties"]
    assert fields["query"] == {"type": "percolator"}
    assert {k: fields[k] for k in listings["mappings"]["properties"]} == listings["mappings"]["properties"]


def test_indices_order_by_when_they_were_built_and_the_first_one_is_oldest():
    names = ["properties-v3-20261126t193305278", "properties-v1", "properties-v2-20261126t192914738"]
    assert sorted(names, key=_built_at) == [names[1], names[2], names[0]]
