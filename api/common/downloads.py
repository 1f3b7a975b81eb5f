"""Serving a blob over HTTP: streamed, with its ETag (the SHA-256), conditional GETs and byte ranges.

- `If-None-Match` naming the ETag (or `*`) -> 304, no body.
- `Range: bytes=a-b`, `bytes=a-`, `bytes=-n` -> 206 with `Content-Range`; a range that starts past the
  end -> 416 with `Content-Range: bytes */size`. `If-Range` with another ETag -> the whole file (200).
  Several ranges in one header are answered with the whole file (200): RFC 9110 lets a server ignore
  Range, and one multipart/byteranges body is rarely what a client wants. An unparsable Range is
  ignored the same way.
- Every answer says `X-Content-Type-Options: nosniff` and a `sandbox` CSP: the browser takes the type
  we detected from the bytes and runs nothing a file might contain.
"""

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import quote

from fastapi.responses import Response, StreamingResponse

from api.common.errors import ApiError
from storage import BlobStore

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range asked for, None for the whole file; raises Unsatisfiable for a range past the end."""
    if not header or "," in header:
        return None
    match = _RANGE.match(header)
    if not match or (match[1] == "" and match[2] == ""):
        return None
    first, last = match[1], match[2]
    if first == "":  # the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignored, as RFC 9110 says
    if start >= size:
        raise Unsatisfiable
    return ByteRange(start, end)


def etag_of(sha256: str) -> str:
    return f'"{sha256}"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison, as If-None-Match uses: `W/"x"` matches `"x"`."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def content_disposition(filename: str, inline: bool) -> str:
    ascii_name = filename.encode("ascii", "ignore").decode().replace('"', "").replace("\\", "") or "download"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def _chunks(iterator: Iterator[bytes]) -> AsyncIterator[bytes]:
    # Disk and S3 reads block: each chunk is read in a worker thread, never on the event loop.
    while (chunk := await asyncio.to_thread(next, iterator, None)) is not None:
        yield chunk


async def blob_response(
    store: BlobStore,
    *,
    sha256: str,
    size: int,
    content_type: str,
    filename: str,
    inline: bool,
    cache_control: str,
    method: str,
    range_header: str | None,
    if_range: str | None,
    if_none_match: str | None,
) -> Response:
    etag = etag_of(sha256)
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": cache_control,
        "Content-Disposition": content_disposition(filename, inline),
        **SAFE_HEADERS,
    }
    if matches(if_none_match, etag):
        return Response(status_code=304, headers={k: v for k, v in headers.items() if k != "Content-Disposition"})
    wanted: ByteRange | None = None
    if if_range is None or if_range.strip() == etag:
        try:
            wanted = parse_range(range_header, size)
        except Unsatisfiable:
            raise ApiError(
                416,
                f"Range not satisfiable: the file has {size} bytes",
                [{"field": "Range", "message": f"bytes 0-{max(size - 1, 0)} exist"}],
                headers={"Content-Range": f"bytes */{size}", **SAFE_HEADERS},
            ) from None
    status, start, end = 200, 0, size - 1
    if wanted is not None:
        status, start, end = 206, wanted.start, wanted.end
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    if method == "HEAD" or size == 0:
        return Response(status_code=status, headers=headers, media_type=content_type)
    try:
        iterator = await asyncio.to_thread(store.read, sha256, start, end)
    except FileNotFoundError:
        raise ApiError(404, "The file's bytes are gone") from None
    return StreamingResponse(_chunks(iterator), status_code=status, headers=headers, media_type=content_type)
