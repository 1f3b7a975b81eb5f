"""orjson codec for envelopes. Decoding failures raise `EventDecodeError` with a reason a human can
act on; the stream worker puts that reason on the dead-letter topic beside the raw bytes."""

from collections.abc import Iterator
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.envelope import Envelope

# How deep an event's data may nest. A request body may nest 32 levels (the door, api/common/request_guard.py)
# and a command may wrap it in a few of its own; orjson stops at 255 levels and pydantic earlier, so past
# those an event could be published or read by nobody.
MAX_EVENT_DEPTH = 64
NUL_PROBLEM = "must not contain a NUL character (\\u0000)"


class EventDecodeError(ValueError):
    """The bytes are not an event we can read: malformed JSON, a missing attribute, an unknown type."""


class UnstorableEvent(ValueError):
    """An event that some store could never hold: refused before it is published, naming the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def encode(envelope: Envelope) -> bytes:
    """The event as published. Every producer passes here, so this is where an event that no projection
    could store (a NUL in Postgres text, nesting past what our parsers take) is refused, whatever the
    door it came in by: accepted into Kafka, it would be dead-lettered by every reader."""
    try:
        raw = orjson.dumps(envelope.model_dump(mode="json", exclude_none=True))
    except (orjson.JSONEncodeError, ValueError):
        _refuse_unstorable(envelope.data, envelope.model_dump(exclude={"data"}))
        raise
    # Cheap byte tests first: only an event that mentions \u0000 or has many brackets is walked.
    if b"\\u0000" in raw or raw.count(b"{") + raw.count(b"[") > MAX_EVENT_DEPTH:
        document = orjson.loads(raw)
        _refuse_unstorable(document.pop("data", {}), document)
    return raw


def _refuse_unstorable(data: Any, attributes: dict[str, Any]) -> None:
    # `data` is walked as a document of its own: its fields are the ones a client sent, named the same.
    problem = document_problem(data, MAX_EVENT_DEPTH) or document_problem(attributes, MAX_EVENT_DEPTH)
    if problem is not None:
        raise UnstorableEvent(*problem)


def decode(raw: bytes | str | None) -> Envelope:
    if raw is None or raw == b"" or raw == "":
        raise EventDecodeError("empty message: an event needs a CloudEvents JSON body")
    try:
        document: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise EventDecodeError(f"an event is a JSON object, got {type(document).__name__}")
    if document.get("specversion") != "1.0":
        raise EventDecodeError(f"unsupported specversion {document.get('specversion')!r}, expected '1.0'")
    try:
        return Envelope.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'event'}: {error['msg']}" for error in exc.errors()
        )
        raise EventDecodeError(f"invalid event: {problems}") from None


def decode_storable(raw: bytes | str | None) -> Envelope:
    """`decode`, also refusing what Postgres cannot store: JSON allows `\\u0000`, Postgres text and
    jsonb do not, and one such event must be dead-lettered, not fail its whole batch."""
    envelope = decode(raw)
    # Cheap byte test first: only an event whose JSON mentions \\u0000 is walked to find a real NUL.
    marker = b"\\u0000" if isinstance(raw, bytes) else "\\u0000"
    if raw is not None and marker in raw and nul_path(envelope.model_dump()) is not None:  # type: ignore[operator]
        raise EventDecodeError("event contains a NUL character (\\u0000), which Postgres cannot store")
    return envelope


def _nodes(document: Any) -> Iterator[tuple[str, Any, int]]:
    """(path, value, depth) of every value in a decoded JSON document, in document order, without
    recursion (a document nested thousands deep is walked like a flat one). A container's depth counts
    itself: `{}` is 1 deep, `{"a": [1]}` is 2."""
    stack: list[tuple[str, Any, int]] = [("", document, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, dict):
            depth += 1
            children = [(f"{path}.{key}" if path else str(key), item, depth) for key, item in value.items()]
        elif isinstance(value, list):
            depth += 1
            children = [(f"{path}[{index}]", item, depth) for index, item in enumerate(value)]
        else:
            children = []
        yield path, value, depth
        stack.extend(reversed(children))


def _has_nul(path: str, value: Any) -> bool:
    # A key is part of its value's path, and parents come first: the first path with a NUL is its key's.
    return "\x00" in path or (isinstance(value, str) and "\x00" in value)


def _field(path: str) -> str:
    return path.replace("\x00", "") or "body"


def nul_path(document: Any) -> str | None:
    """Where the first NUL character in a decoded JSON document is, named as the document names it:
    `title`, `amenities[2]`, `body` for a bare string; None if nowhere."""
    return next((_field(path) for path, value, _ in _nodes(document) if _has_nul(path, value)), None)


def document_problem(document: Any, max_depth: int) -> tuple[str, str] | None:
    """The first thing in a decoded JSON document that no store can hold, as (field, problem): a NUL
    character (Postgres text and jsonb refuse it), or nesting deeper than `max_depth` levels (named by
    the outermost field it is under, since the full path of a thousand levels helps nobody)."""
    for path, value, depth in _nodes(document):
        if _has_nul(path, value):
            return _field(path), NUL_PROBLEM
        if depth > max_depth:
            return _field(path.split(".", 1)[0].split("[", 1)[0]), f"must not nest deeper than {max_depth} levels"
    return None
