"""The `X-Consistency-Token` a command answers with, and what a query accepts back."""

import pytest

from api.common.errors import ApiError
from api.common.kafka import CONSISTENCY_HEADER, Position, consistency_token, parse_consistency_token


def test_token_keeps_the_highest_offset_per_partition_in_a_stable_order():
    positions = [
        Position("users", 1, 7),
        Position("properties", 3, 1040),
        Position("properties", 3, 1042),
        Position("properties", 0, 5),
    ]
    token = consistency_token(positions)
    assert token == "properties:0:5,properties:3:1042,users:1:7"
    assert parse_consistency_token(token) == [
        Position("properties", 0, 5),
        Position("properties", 3, 1042),
        Position("users", 1, 7),
    ]


def test_topic_names_with_dots_dashes_and_underscores_round_trip():
    positions = [Position("dead-letters", 0, 0), Position("a.b_c", 5, 9)]
    assert sorted(parse_consistency_token(consistency_token(positions))) == sorted(positions)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "users",
        "users:1",
        "users:1:x",
        "users:-1:3",
        "users:1:3,",
        "us ers:1:3",
        "users:1:3:4",
        ",".join(["t:0:1"] * 65),
    ],
)
def test_a_malformed_token_is_a_400_naming_the_header(token):
    with pytest.raises(ApiError) as caught:
        parse_consistency_token(token)
    assert caught.value.status == 400
    assert [e["field"] for e in caught.value.errors] == [CONSISTENCY_HEADER]
