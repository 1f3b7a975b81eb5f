"""Pure part of the search projection: records of `searches` and `users` -> changes for Postgres, and a
saved search's current row -> its percolator document.

- `search.saved.v1` / `search.saved_deleted.v1` -> `saved_searches` rows. They carry no sequence; a saved
  search's events share one partition (keyed by its id), so the record's offset orders them and is the
  row's version.
- `search.performed.v1` -> a `search_history` row, keyed by the event id (a redelivery is the same row).
- A search's words and a saved search's name travel sealed with the user's key (`schemas/personal.py`);
  `opened` opens them with the keys the sink reads, and drops the change when the key is gone (the
  account is closed: nothing of it is written, its erasure is on the way).
- `search.saved_match.v1` -> nothing here (the matcher produced it; history and notifications read it).
- `user.deleted.v1` on `users` -> erase: that user's saved searches and history go, and anything of
  theirs replayed later is ignored. Other user events are the user projection's business.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from schemas.codec import EventDecodeError, decode, decode_storable
from schemas.envelope import format_time
from schemas.personal import SEARCH_NAME, SEARCH_QUERY, UnreadablePersonalData, is_sealed, unseal
from schemas.registry import EVENTS
from schemas.search_query import percolator_query
from schemas.searches import (
    SEARCH_PERFORMED,
    SEARCH_SAVED,
    SEARCH_SAVED_DELETED,
    SEARCH_SAVED_MATCH,
    SavedSearchDeleted,
    SearchCriteria,
    SearchPerformed,
    SearchSaved,
)
from schemas.topics import SEARCHES, USERS
from schemas.users import USER_DELETED
from streams.dead_letters import DeadLetter
from streams.positions import RawRecord, SourcePosition

PROJECTION_CONSUMER = "search-projection"


@dataclass(frozen=True)
class SavedSearchWritten:
    saved_search_id: str
    owner_id: str
    name: str
    criteria: dict[str, Any]
    version: int  # the record's offset
    event_id: str
    at: datetime
    sealed_query: str | None = None  # the criteria's `q`, until `opened` puts it back in


@dataclass(frozen=True)
class SavedSearchRemoved:
    saved_search_id: str
    owner_id: str
    version: int
    event_id: str
    at: datetime


@dataclass(frozen=True)
class SearchRecorded:
    event_id: str
    user_id: str
    query: str | None
    filters: dict[str, Any]
    result_count: int
    at: datetime


@dataclass(frozen=True)
class UserErased:
    user_id: str
    at: datetime


SearchChange = SavedSearchWritten | SavedSearchRemoved | SearchRecorded | UserErased


@dataclass(frozen=True)
class SearchPlan:
    changes: list[SearchChange]
    dead_letters: list[DeadLetter]
    positions: list[SourcePosition] = field(default_factory=list)


def _from_searches(record: RawRecord) -> SearchChange | None:
    event = EVENTS.read(decode_storable(record.value))
    envelope, data = event.envelope, event.data
    if envelope.type == SEARCH_SAVED_MATCH:
        return None
    if envelope.type in (SEARCH_SAVED, SEARCH_SAVED_DELETED):
        if record.key is not None and record.key != envelope.subject.encode():
            # Offsets order a saved search's events only if they all live on its partition.
            raise EventDecodeError(f"{envelope.type} of {envelope.subject} keyed {record.key!r}, expected its id")
        offset = record.position.offset
        if isinstance(data, SearchSaved):
            if data.saved_search_id != envelope.subject:
                raise EventDecodeError(f"{envelope.type}: subject {envelope.subject} is not {data.saved_search_id}")
            criteria = dict(data.criteria)
            sealed_query = criteria.pop("q") if is_sealed(criteria.get("q")) else None
            try:
                checked = SearchCriteria.model_validate(criteria)
            except ValueError as exc:
                raise EventDecodeError(f"{envelope.type}: invalid criteria: {exc}") from None
            return SavedSearchWritten(
                data.saved_search_id,
                data.owner_id,
                data.name,
                checked.to_wire(),
                offset,
                envelope.id,
                envelope.time,
                sealed_query,
            )
        assert isinstance(data, SavedSearchDeleted)
        return SavedSearchRemoved(data.saved_search_id, data.owner_id, offset, envelope.id, envelope.time)
    if envelope.type == SEARCH_PERFORMED:
        assert isinstance(data, SearchPerformed)
        return SearchRecorded(
            envelope.id, data.user_id, data.query, dict(data.filters), data.result_count, envelope.time
        )
    raise EventDecodeError(f"{envelope.type} does not belong on the searches topic")


def _from_users(record: RawRecord) -> SearchChange | None:
    # Only the envelope: the user events' payloads are the user projection's to read (and sealed).
    envelope = decode(record.value)
    if envelope.type != USER_DELETED:
        return None
    return UserErased(envelope.subject, envelope.time)


def search_change(record: RawRecord) -> SearchChange | None:
    """None for events this projection has nothing to do; raises `EventDecodeError` for poison."""
    if record.position.topic == USERS.name:
        return _from_users(record)
    if record.position.topic == SEARCHES.name:
        return _from_searches(record)
    raise EventDecodeError(f"the search projection does not read {record.position.topic}")


def sealed_for(changes: Sequence[SearchChange]) -> Collection[str]:
    """The users whose keys `opened` needs for these changes."""
    users: set[str] = set()
    for change in changes:
        if isinstance(change, SavedSearchWritten) and (change.sealed_query or is_sealed(change.name)):
            users.add(change.owner_id)
        elif isinstance(change, SearchRecorded) and is_sealed(change.query):
            users.add(change.user_id)
    return users


def _open(keys: Mapping[str, bytes], user_id: str, field: str, value: str) -> str:
    if not is_sealed(value):
        return value  # older events, and users without a key, carry their words in the clear
    key = keys.get(user_id)
    if key is None:
        raise UnreadablePersonalData(f"{field}: the key of {user_id} is gone")
    return unseal(key, user_id, field, value)


def opened(change: SearchChange, keys: Mapping[str, bytes]) -> SearchChange | None:
    """The change with its user's words opened; None when they cannot be (the key is gone)."""
    try:
        if isinstance(change, SavedSearchWritten):
            owner, criteria = change.owner_id, change.criteria
            if change.sealed_query is not None:
                criteria = {**criteria, "q": _open(keys, owner, SEARCH_QUERY, change.sealed_query)}
            name = _open(keys, owner, SEARCH_NAME, change.name)
            return replace(change, name=name, criteria=criteria, sealed_query=None)
        if isinstance(change, SearchRecorded) and change.query is not None:
            return replace(change, query=_open(keys, change.user_id, SEARCH_QUERY, change.query))
    except UnreadablePersonalData:
        return None
    return change


def plan_searches(records: Sequence[RawRecord]) -> SearchPlan:
    changes: list[SearchChange] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            change = search_change(record)
        except EventDecodeError as exc:
            dead.append(DeadLetter(record.key, record.value, str(exc), record.position, PROJECTION_CONSUMER))
            continue
        if change is not None:
            changes.append(change)
    return SearchPlan(changes, dead, [r.position for r in records])


# ---- the percolator document, from the current row ----


@dataclass(frozen=True)
class SavedSearchRow:
    id: str
    owner_id: str
    name: str | None
    criteria: dict[str, Any] | None
    deleted: bool
    version: int
    created_at: datetime | None
    updated_at: datetime


def saved_search_view(row: SavedSearchRow) -> dict[str, Any]:
    """A saved search as the API shows it."""
    return {
        "id": row.id,
        "ownerId": row.owner_id,
        "name": row.name,
        "criteria": row.criteria or {},
        "createdAt": format_time(row.created_at) if row.created_at else None,
    }


def saved_search_document(row: SavedSearchRow) -> dict[str, Any] | None:
    """The percolator document of a live saved search; None when it is gone (the sink deletes it).
    Criteria were validated when the event was planned; a row that no longer validates (a criteria
    shape retired since) is not registered rather than registered wrong."""
    if row.deleted or row.criteria is None:
        return None
    criteria = SearchCriteria.model_validate(row.criteria)
    return {
        "query": percolator_query(criteria),
        "savedSearchId": row.id,
        "ownerId": row.owner_id,
        "name": row.name,
        "savedAt": format_time(row.created_at) if row.created_at else None,
        "version": row.version,
    }
