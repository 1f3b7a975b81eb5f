"""What a query waits for without a token: the caller's own writes, merged with any token sent; and
every query of the six services reads the consistency header through that one dependency."""

import importlib

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.common.deps import consistency_positions, query_context, signed_in_query_context
from api.common.errors import ApiError
from api.common.kafka import CONSISTENCY_HEADER, Position, consistency_token, parse_consistency_token
from api.common.own_writes import decode, with_own_writes

SERVICES = ("user", "property", "search", "user_history", "notification", "file")
# The probes read no projection (`/status` and `/metrics` read checkpoints, never a caller's data).
READ_NO_PROJECTION = {"/health", "/ready", "/status", "/metrics"}


def test_without_own_writes_the_token_sent_is_waited_for_as_it_is():
    assert with_own_writes(None, ()) is None
    assert with_own_writes("users:1:7", ()) == "users:1:7"


def test_own_writes_raise_the_token_to_the_highest_offset_per_partition():
    own = (Position("properties", 3, 90), Position("users", 1, 5))
    assert with_own_writes(None, own) == "properties:3:90,users:1:5"
    assert with_own_writes("users:1:7,files:0:2,properties:3:40", own) == "files:0:2,properties:3:90,users:1:7"


def test_a_full_token_plus_own_writes_is_still_waited_for():
    sent = consistency_token(Position("t", p, 1) for p in range(64))
    merged = with_own_writes(sent, (Position("users", 0, 3),))
    assert merged is not None
    assert len(parse_consistency_token(merged, limit=None)) == 65


def test_a_malformed_token_is_refused_even_with_own_writes():
    with pytest.raises(ApiError) as caught:
        with_own_writes("users:x", (Position("users", 0, 3),))
    assert caught.value.status == 400 and caught.value.errors[0]["field"] == CONSISTENCY_HEADER


def test_the_hash_decodes_to_positions_and_skips_what_is_not_one():
    fields = {b"properties:3:": b"1", b"users:1": b"7", b"dead-letters:0": b"12", b"nope": b"1", b"files:2": b"x"}
    assert decode(fields) == (Position("dead-letters", 0, 12), Position("users", 1, 7))


def _routes(routes):
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # FastAPI includes routers lazily
            yield from _routes(route.original_router.routes)


# The dependencies that make a query wait for the token and the caller's own writes (api/common/deps.py).
_WAITS = (consistency_positions, query_context, signed_in_query_context)


def _waits_for_own_writes(dependant: Dependant) -> bool:
    return any(d.call in _WAITS or _waits_for_own_writes(d) for d in dependant.dependencies)


def _reads_the_header_itself(dependant: Dependant) -> bool:
    if dependant.call in _WAITS:
        return False
    return any(p.alias == CONSISTENCY_HEADER for p in dependant.header_params) or any(
        _reads_the_header_itself(d) for d in dependant.dependencies
    )


@pytest.mark.parametrize("service", SERVICES)
def test_every_query_waits_for_the_callers_own_writes(service):
    app = importlib.import_module(f"api.{service}.main").app
    routes = list(_routes(app.routes))
    queries = [r for r in routes if r.methods & {"GET", "HEAD"} and r.path not in READ_NO_PROJECTION]
    assert queries
    assert [r.path for r in queries if not _waits_for_own_writes(r.dependant)] == []
    assert [r.path for r in routes if _reads_the_header_itself(r.dependant)] == []
