"""multipart/form-data read straight off the request stream, one chunk at a time.

Starlette's `request.form()` parses the whole body before the route runs, spooling each file to a
`SpooledTemporaryFile` (1 MB in memory, then a temporary file) that the route then copies again.
Here python-multipart's low-level parser is fed the chunks uvicorn hands over (about 64 KiB each, with
flow control), and each piece of a part's data is passed on as it arrives: the bytes go once from the
socket to the blob store's temporary file, and memory holds one chunk at a time, whatever the size.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from api.common.errors import ApiError, field_error


@dataclass
class PartStart:
    name: str
    filename: str | None  # None for a plain form field
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class PartData:
    data: bytes


@dataclass
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


class _Collector:
    """python-multipart's callbacks, turned into a list of events drained after each chunk."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()

    def on_part_begin(self) -> None:
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("utf-8", "replace")
        self._field, self._value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        # As bytes: the parser reads them as latin-1 and hands the bytes back, so a name in UTF-8 (RFC 7578
        # allows it) survives; given as text, anything past latin-1 makes it raise.
        disposition = self._headers.get("content-disposition", "").encode("utf-8")
        kind, options = parse_options_header(disposition)
        if kind != b"form-data" or b"name" not in options:
            raise ApiError(422, "Malformed multipart body", [field_error("body", "every part needs a form-data name")])
        name = options[b"name"].decode("utf-8", "replace")
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        self.events.append(PartStart(name, filename, self._headers))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.events.append(PartData(bytes(data[start:end])))

    def on_part_end(self) -> None:
        self.events.append(PartEnd())

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }


def boundary_of(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(
            415,
            "Send the file as multipart/form-data",
            [field_error("Content-Type", "expected multipart/form-data with a boundary")],
        )
    return options[b"boundary"]


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    return int(raw) if raw is not None and raw.isdigit() else None


async def parts(request: Request) -> AsyncIterator[Event]:
    """The body's parts as events, in order, without buffering more than one received chunk."""
    collector = _Collector()
    parser = MultipartParser(boundary_of(request), collector.callbacks())  # type: ignore[arg-type]
    async for chunk in request.stream():
        if not chunk:
            continue
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise ApiError(422, "Malformed multipart body", [field_error("body", str(exc))]) from None
        for event in collector.events:
            yield event
        collector.events.clear()
    if parser.state not in (MultipartState.END, MultipartState.END_BOUNDARY):
        raise ApiError(
            422, "Malformed multipart body", [field_error("body", "the body ended before its closing boundary")]
        )


async def drain(request: Request, limit: int) -> bool:
    """Read and drop what is left of the body (up to `limit` bytes), so the client, still sending, gets
    our answer instead of a broken pipe; False when there was more than that (the connection closes)."""
    dropped = 0
    try:
        async for chunk in request.stream():
            dropped += len(chunk)
            if dropped > limit:
                return False
    except Exception:  # the stream was already consumed or the client went away: nothing to drain
        return True
    return True
