"""User history's language: activity types, the activity document, the rebuild command, and the names
of the stores both the history workers (streams/history) and the user-history service read.

History is a projection of the event topics (users, properties, property-views, searches, files): one
activity per event a user took part in, keyed by the event id. It is kept in *generations*: a Postgres
schema `user_history_<namespace>_g<N>` and Redis keys `history:<namespace>:g<N>:…` each. One generation
per namespace is live (the pointer `user_history_live`); a rebuild fills a new one and swaps the pointer.
Activities never hold a person's email, phone or name: only ids and non-personal facts.
"""

import re
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from schemas.envelope import format_time
from schemas.personal import SEARCH_NAME, SEARCH_QUERY, is_sealed
from schemas.registry import EventData

# ---- activities ----


class Category(StrEnum):
    ACCOUNT = "account"
    PROPERTY = "property"
    SEARCH = "search"
    FILE = "file"


# Activity type = the event type without its version; one place says which category each belongs to.
ACTIVITY_CATEGORIES: dict[str, Category] = {
    "user.registered": Category.ACCOUNT,
    "user.logged_in": Category.ACCOUNT,
    "user.profile_updated": Category.ACCOUNT,
    "property.created": Category.PROPERTY,
    "property.updated": Category.PROPERTY,
    "property.deleted": Category.PROPERTY,
    "property.images_added": Category.PROPERTY,
    "property.viewed": Category.PROPERTY,
    "search.performed": Category.SEARCH,
    "search.saved": Category.SEARCH,
    "search.saved_deleted": Category.SEARCH,
    "file.uploaded": Category.FILE,
    "file.deleted": Category.FILE,
}
ACTIVITY_TYPES: frozenset[str] = frozenset(ACTIVITY_CATEGORIES)
VIEWED = "property.viewed"
LISTING_CREATED = "property.created"
SEARCH_PERFORMED = "search.performed"
SEARCH_SAVED = "search.saved"

# How many activities a user's recent list keeps (Redis), and the most `/recent` serves.
RECENT_SIZE = 50


def activity_type_of(value: str) -> str:
    """`property.created.v1` or `property.created` -> `property.created`."""
    return re.sub(r"\.v[0-9]+$", "", value)


def activity_document(
    *,
    event_id: str,
    activity_type: str,
    category: str,
    event_type: str,
    subject: str,
    property_id: str | None,
    occurred_at: datetime,
    summary: str,
    details: dict[str, Any],
) -> dict[str, Any]:
    """One activity as the API shows it; Redis holds exactly this, and Postgres rows are read back into it."""
    return {
        "id": event_id,
        "type": activity_type,
        "category": category,
        "eventType": event_type,
        "subject": subject,
        "propertyId": property_id,
        "occurredAt": format_time(occurred_at),
        "summary": summary,
        "details": details,
    }


# ---- generations: where a namespace's history lives ----

NAMESPACE_PATTERN = r"^[a-z][a-z0-9_]{0,23}$"


def check_namespace(namespace: str) -> str:
    if not re.match(NAMESPACE_PATTERN, namespace):
        raise ValueError(f"history namespace {namespace!r} must match {NAMESPACE_PATTERN}")
    return namespace


def generation_schema(namespace: str, generation: int) -> str:
    return f"user_history_{check_namespace(namespace)}_g{generation}"


def postgres_checkpoint(namespace: str, generation: int) -> str:
    """`projection_checkpoints.projection` of a generation's Postgres tables (read-your-writes waits on it)."""
    return f"user-history:{namespace}:g{generation}:postgres"


def redis_checkpoint(namespace: str, generation: int) -> str:
    return f"user-history:{namespace}:g{generation}:redis"


def replayer_checkpoint(namespace: str) -> str:
    """How far a namespace's replayer has recorded the rebuilds asked of it (`user-history-replays`)."""
    return f"user-history-replayer:{namespace}"


def redis_prefix(namespace: str, generation: int) -> str:
    return f"history:{namespace}:g{generation}:"


def recent_keys(namespace: str, generation: int, user_id: str) -> tuple[str, str]:
    """(sorted set of event ids scored by event time in ms, hash of event id -> activity JSON)."""
    base = f"{redis_prefix(namespace, generation)}recent:{user_id}"
    return base, base + ":docs"


# ---- the rebuild command ----

REBUILD_HISTORY = "history.rebuild.v1"


class RebuildHistory(EventData):
    """On `user-history-replays`, keyed by the job id; decided by the replay worker of `namespace`.

    `from_time` None = from the earliest offsets; `until` set = a read-only point-in-time copy that is
    never swapped in; `user_id` set = that user's history only."""

    job_id: str = Field(pattern=r"^job-[A-Za-z0-9]{1,64}$")
    namespace: str = Field(pattern=NAMESPACE_PATTERN)
    user_id: str | None = None
    from_time: datetime | None = None
    until: datetime | None = None
    requested_by: str

    @field_validator("from_time", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone")
        return value


COMMANDS: dict[str, type[EventData]] = {REBUILD_HISTORY: RebuildHistory}


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class JobPhase(StrEnum):
    """Where a running job is, in order; `GET /api/user-history/replay/{jobId}` reports it."""

    QUEUED = "queued"
    SEEDING = "seeding"
    LOADING = "loading"
    INDEXING = "indexing"
    CATCHING_UP = "catching_up"
    SWAPPING = "swapping"
    DONE = "done"


# ---- a person's own words in their history ----
# A search's words and a saved search's name are sealed with the user's key (schemas/personal.py); the
# projection keeps them sealed (it holds no keys) and the history service opens them when it answers.


def search_summary(query: str | None) -> str:
    if query and not is_sealed(query):
        return f"Searched for {query!r}"
    return "Searched" if query else "Searched with filters"


def saved_search_summary(name: str | None) -> str:
    return f"Saved the search {name!r}" if name and not is_sealed(name) else "Saved a search"


def opened_activity(document: dict[str, Any], open_text: Callable[[str, str], str | None]) -> dict[str, Any]:
    """The activity with its sealed words opened by `open_text(field, sealed)` (None: the key is gone,
    the words are left out)."""
    activity_type, details = document.get("type"), document.get("details") or {}

    def opened(field: str, value: Any) -> Any:
        return open_text(field, value) if is_sealed(value) else value

    if activity_type == SEARCH_PERFORMED and is_sealed(details.get("query")):
        query = opened(SEARCH_QUERY, details["query"])
        return {**document, "summary": search_summary(query), "details": {**details, "query": query}}
    if activity_type == SEARCH_SAVED:
        criteria = dict(details.get("criteria") or {})
        if is_sealed(criteria.get("q")):
            criteria["q"] = opened(SEARCH_QUERY, criteria["q"])
        name = opened(SEARCH_NAME, details.get("name"))
        return {
            **document,
            "summary": saved_search_summary(name),
            "details": {**details, "name": name, "criteria": criteria},
        }
    return document
