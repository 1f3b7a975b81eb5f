"""orjson codec for envelopes. Decoding failures raise `EventDecodeError` with a reason a human can
act on; the stream worker puts that reason on the dead-letter topic beside the raw bytes."""

from typing import Any

import orjson
from pydantic import ValidationError

from schemas.envelope import Envelope


class EventDecodeError(ValueError):
    """The bytes are not an event we can read: malformed JSON, a missing attribute, an unknown type."""


def encode(envelope: Envelope) -> bytes:
    return orjson.dumps(envelope.model_dump(mode="json", exclude_none=True))


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


def nul_path(value: Any, path: str = "") -> str | None:
    """Where the first NUL character in a decoded JSON document is, named as the document names it:
    `title`, `amenities[2]`, `body` for a bare string; None if nowhere."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return name
            found = nul_path(item, name)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
