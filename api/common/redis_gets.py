"""Redis GETs, pipelined on one connection of their own: the fast lane's one store call.

redis-py costs about 110 µs of CPU per GET here (a pooled connection lent and returned, the retry
wrapper, the health check, its parser), more than the rest of a fast read. These GETs are written
into one buffer per event-loop turn and flushed with one write, and the replies are read off the
socket in order: under load many requests share a system call each way. Only GET, only a plain TCP
`redis://` URL (`for_url` says None otherwise, and the caller keeps redis-py). A lost connection
fails what was waiting with `redis.exceptions.ConnectionError` and the next GET connects again; a
reply later than `timeout` drops the connection (its other replies could not be matched any more) and
raises `redis.exceptions.TimeoutError`: the errors the service answers 503 for, as with redis-py.
"""

import asyncio
from collections import deque
from typing import cast
from urllib.parse import unquote, urlsplit

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_CRLF = b"\r\n"


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def _reply(buffer: bytearray) -> tuple[bytes | ResponseError | None, int] | None:
    """One reply off the front of `buffer` and its length, or None while it is incomplete."""
    end = buffer.find(_CRLF)
    if end < 0:
        return None
    kind = buffer[0]
    if kind == ord("$"):
        size = int(buffer[1:end])
        if size < 0:
            return None, end + 2
        if len(buffer) < end + 2 + size + 2:
            return None
        return bytes(buffer[end + 2 : end + 2 + size]), end + 2 + size + 2
    if kind == ord("+"):
        return bytes(buffer[1:end]), end + 2
    if kind == ord("-"):
        return ResponseError(buffer[1:end].decode(errors="replace")), end + 2
    raise RedisConnectionError(f"unexpected Redis reply type {chr(kind)!r}")


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[bytes | None]] = deque()
        self.buffer = bytearray()
        self.pending: list[bytes] = []  # commands of this event-loop turn, written at its end
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, though not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.waiting and self.buffer:
            try:
                parsed = _reply(self.buffer)
            except (RedisConnectionError, ValueError) as exc:
                self.drop(RedisConnectionError(f"unreadable Redis reply: {exc}"))
                return
            if parsed is None:
                return
            value, used = parsed
            del self.buffer[:used]
            waiter = self.waiting.popleft()
            if waiter.done():  # timed out: its connection is being dropped anyway
                continue
            if isinstance(value, ResponseError):
                waiter.set_exception(value)
            else:
                waiter.set_result(value)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(RedisConnectionError(f"Redis connection lost ({exc or 'closed'})"))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if self.lost or self.transport is None:
            self._fail(RedisConnectionError("Redis connection lost"))
            return
        self.transport.write(b"".join(pending))

    def drop(self, why: Exception) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()
        self._fail(why)

    def _fail(self, why: Exception) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(why)


class RedisGets:
    def __init__(
        self, host: str, port: int, *, username: str | None, password: str | None, db: int, timeout: float
    ) -> None:
        self.host, self.port, self.db, self.timeout = host, port, db, timeout
        self._hello: list[bytes] = []
        if password is not None:
            self._hello.append(
                _command(b"AUTH", username.encode(), password.encode())
                if username
                else _command(b"AUTH", password.encode())
            )
        if db:
            self._hello.append(_command(b"SELECT", str(db).encode()))
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    def for_url(cls, url: str, timeout: float) -> "RedisGets | None":
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname or parts.query:
            return None
        db = parts.path.strip("/") or "0"
        if not db.isdigit():
            return None
        return cls(
            parts.hostname,
            parts.port or 6379,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            db=int(db),
            timeout=timeout,
        )

    async def get(self, key: str) -> bytes | None:
        connection = self._connection
        if connection is None or connection.lost:
            connection = await self._connect()
        return await self._send(connection, _command(b"GET", key.encode()))

    async def aclose(self) -> None:
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
        self._connection = None

    async def _send(self, connection: _Connection, command: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes | None] = loop.create_future()
        connection.waiting.append(waiter)
        if not connection.pending:
            loop.call_soon(connection.flush)
        connection.pending.append(command)
        expiry = loop.call_later(self.timeout, self._expire, connection, waiter)
        try:
            return await waiter
        finally:
            expiry.cancel()

    def _expire(self, connection: _Connection, waiter: asyncio.Future[bytes | None]) -> None:
        if not waiter.done():
            waiter.set_exception(RedisTimeoutError(f"no Redis reply within {self.timeout:g} s"))
            connection.drop(RedisConnectionError("Redis connection dropped after a reply timed out"))

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connection is not None and not self._connection.lost:
                return self._connection
            loop = asyncio.get_running_loop()
            try:
                _, connection = await asyncio.wait_for(
                    loop.create_connection(_Connection, self.host, self.port), self.timeout
                )
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(f"cannot connect to Redis at {self.host}:{self.port} ({exc})") from exc
            try:
                for hello in self._hello:
                    await self._send(connection, hello)
            except ResponseError as exc:
                connection.drop(RedisConnectionError("closed"))
                raise RedisConnectionError(f"Redis refused this client ({exc})") from exc
            self._connection = connection
            return connection
