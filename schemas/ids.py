"""Prefixed identifiers (`user-…`, `prop-…`, `evt-…`) so an id says what it names."""

import uuid
from typing import Literal

IdPrefix = Literal["user", "prop", "file", "search", "notif", "evt", "corr", "job", "cmd"]


def new_id(prefix: IdPrefix) -> str:
    # uuid7 would sort by time, but Python 3.11 lacks it; ids are opaque, ordering comes from Kafka.
    return f"{prefix}-{uuid.uuid4().hex}"
