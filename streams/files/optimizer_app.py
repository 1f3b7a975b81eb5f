"""The image optimiser: `python -m streams.files.optimizer_worker worker -l info`.

Its own Faust app and consumer group (`settings.file_optimizer_group`, default `file-optimizer`), so
image work never delays the read models. It reads `files` and acts on `file.optimize_requested.v1`:

1. which variants of these bytes exist already (`file_variants`, keyed by the source's SHA-256);
2. decode the source once, render each missing variant (a worker thread: the event loop keeps
   heartbeating), store its bytes (content-addressed), record it in `file_variants`: each variant is
   recorded once, so a worker killed mid-job and restarted (the request is redelivered, its offset
   was never committed) makes only what is still missing;
3. produce `file.optimized.v1` listing every variant, with an event id and time derived from the job,
   so a redelivered job produces the very same event again, which every reader ignores.
A source that cannot be decoded safely (a decompression bomb, a truncated file, no image) closes the
job with `file.optimization_failed.v1` naming the reason, and the request goes to `dead-letters`; so
does any failure nobody foresaw.
A store that is down is waited for (backoff, the partition stays put).

The worker also runs the blob garbage collector every `HI_FILE_GC_INTERVAL_SECONDS` (streams/files/gc.py).
"""

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime

import faust
import psycopg
from psycopg_pool import AsyncConnectionPool

from config import get_settings
from schemas.codec import EventDecodeError, decode_storable, encode
from schemas.envelope import Envelope, new_event
from schemas.files import (
    FILE_OPTIMIZATION_FAILED,
    FILE_OPTIMIZE_REQUESTED,
    FILE_OPTIMIZED,
    FileOptimizationFailed,
    FileOptimized,
    FileOptimizeRequested,
    Variant,
    VariantFormat,
    variant_formats,
)
from schemas.registry import EVENTS
from schemas.topics import FILES
from storage import Blob, BlobStore, blob_store
from streams.app import create_app
from streams.batches import record_of, until_done
from streams.dead_letters import DeadLetter, or_dead_letter, publish_dead_letters
from streams.files import gc
from streams.files.images import ImageRejected, Rendered, Source, load, render
from streams.positions import RawRecord

log = logging.getLogger("streams.files.optimizer")

OPTIMIZER_CONSUMER = "file-optimizer"
# CloudEvents Kafka binding, structured mode, as every producer of events writes them.
_CLOUDEVENTS_HEADERS = [("content-type", b"application/cloudevents+json")]

_MADE = """
SELECT width, format, pixel_width, height, content_type, sha256, size_bytes, created_at
FROM file_variants WHERE source_sha256 = %s
"""
_RECORD = """
INSERT INTO file_variants (source_sha256, width, format, pixel_width, height, content_type, sha256, size_bytes)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (source_sha256, width, format) DO UPDATE SET
    pixel_width = EXCLUDED.pixel_width, height = EXCLUDED.height, content_type = EXCLUDED.content_type,
    sha256 = EXCLUDED.sha256, size_bytes = EXCLUDED.size_bytes
WHERE file_variants.sha256 <> EXCLUDED.sha256
"""

Made = dict[tuple[int, str], tuple[Variant, datetime]]


def derived_event_id(job_id: str, what: str) -> str:
    return "evt-" + hashlib.sha256(f"{job_id}|{what}".encode()).hexdigest()[:32]


def optimize_request(record: RawRecord) -> tuple[Envelope, FileOptimizeRequested] | None:
    """The job a record asks for, None for every other event on `files`; raises EventDecodeError."""
    envelope = decode_storable(record.value)
    if envelope.type != FILE_OPTIMIZE_REQUESTED:
        if not EVENTS.knows(envelope.type):
            raise EventDecodeError(f"unknown event type {envelope.type!r} on {FILES.name}")
        return None
    event = EVENTS.read(envelope)
    assert isinstance(event.data, FileOptimizeRequested)
    return event.envelope, event.data


class Optimizer:
    def __init__(self, store: BlobStore, pool: AsyncConnectionPool, app: faust.App, max_pixels: int) -> None:
        self._store = store
        self._pool = pool
        self._app = app
        self._max_pixels = max_pixels

    async def handle(self, records: Sequence[RawRecord]) -> None:
        for record in records:
            try:
                found = optimize_request(record)
            except EventDecodeError as exc:
                await self._dead_letter(record, str(exc))
                continue
            if found is None:
                continue
            envelope, request = found
            try:
                await self.optimize(record, envelope, request)
            except Exception as exc:
                # A failure nobody foresaw (a bug; a store being away is waited out, never lands here).
                # The job is closed as failed, so its owner is not shown `queued` for ever, and the request
                # goes to `dead-letters` with the error for a developer.
                log.exception("job %s for %s failed unexpectedly", request.job_id, request.file_id)
                reason = f"the optimiser failed unexpectedly ({type(exc).__name__}); the request is kept for a retry"
                await self._fail(record, envelope, request, reason)

    async def optimize(self, record: RawRecord, envelope: Envelope, request: FileOptimizeRequested) -> None:
        wanted = [(width, fmt) for width in request.widths for fmt in variant_formats(request.content_type)]
        made = await until_done("postgres", lambda: self._made(request.sha256))
        # A variant counts as made when it is recorded and its bytes are still in the store (a store that
        # lost them, restored from an older backup say, gets them made again).
        stored = await until_done("blob store", lambda: asyncio.to_thread(self._stored, made))
        missing = [key for key in wanted if (key[0], key[1].value) not in stored]
        if missing:
            try:
                source = await asyncio.to_thread(self._load, request.sha256, max(request.widths))
                for width, fmt in missing:
                    rendered = await asyncio.to_thread(_render, source, width, fmt)
                    blob = await until_done("blob store", lambda r=rendered: asyncio.to_thread(self._put, r.data))
                    await until_done(
                        "postgres", lambda w=width, r=rendered, b=blob: self._record(request.sha256, w, r, b)
                    )
                    log.info("job %s: made %s.%s of %s", request.job_id, width, fmt.value, request.file_id)
            except ImageRejected as exc:
                await self._fail(record, envelope, request, str(exc))
                return
            made = await until_done("postgres", lambda: self._made(request.sha256))
        variants = [made[(width, fmt.value)] for width, fmt in wanted]
        optimized = FileOptimized(
            file_id=request.file_id, variants=tuple(v for v, _ in variants), job_id=request.job_id
        )
        await self._publish(
            new_event(
                type=FILE_OPTIMIZED,
                subject=request.file_id,
                data=optimized.to_wire(),
                service="file-optimizer",
                userid=request.requested_by,
                correlationid=envelope.correlationid,
                causationid=envelope.id,
                # Derived from the job and the variants' own record: a redelivered job, made again by a
                # restarted worker, produces the very same event.
                time=max(at for _, at in variants),
                event_id=derived_event_id(request.job_id, "optimized"),
            )
        )

    def _load(self, sha256: str, largest_width: int) -> Source:
        try:
            with self._store.local_path(sha256) as path:
                return load(path, self._max_pixels, largest_width)
        except FileNotFoundError:
            raise ImageRejected("the file's bytes are gone (deleted before it was optimised)") from None

    def _stored(self, made: Made) -> set[tuple[int, str]]:
        return {key for key, (variant, _) in made.items() if self._store.size(variant.sha256) is not None}

    def _put(self, data: bytes) -> Blob:
        writer = self._store.writer()
        try:
            writer.write(data)
            return self._store.commit(writer)
        finally:
            writer.discard()

    async def _made(self, source_sha256: str) -> Made:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_MADE, (source_sha256,))
            return {
                (width, fmt): (
                    Variant(
                        width=width,
                        pixel_width=pixel_width,
                        height=height,
                        format=VariantFormat(fmt),
                        content_type=content_type,
                        sha256=sha256,
                        size_bytes=size,
                    ),
                    created_at,
                )
                for width, fmt, pixel_width, height, content_type, sha256, size, created_at in await cursor.fetchall()
            }

    async def _record(self, source_sha256: str, width: int, rendered: Rendered, blob: Blob) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                _RECORD,
                (
                    source_sha256,
                    width,
                    rendered.format.value,
                    rendered.width,
                    rendered.height,
                    rendered.content_type,
                    blob.sha256,
                    blob.size,
                ),
            )

    async def _fail(self, record: RawRecord, envelope: Envelope, request: FileOptimizeRequested, error: str) -> None:
        log.warning("job %s for %s failed: %s", request.job_id, request.file_id, error)
        failed = FileOptimizationFailed(file_id=request.file_id, job_id=request.job_id, error=error)
        await self._publish(
            new_event(
                type=FILE_OPTIMIZATION_FAILED,
                subject=request.file_id,
                data=failed.to_wire(),
                service="file-optimizer",
                userid=request.requested_by,
                correlationid=envelope.correlationid,
                causationid=envelope.id,
                time=envelope.time,
                event_id=derived_event_id(request.job_id, "failed"),
            )
        )
        await self._dead_letter(record, f"cannot optimise {request.file_id}: {error}")

    async def _publish(self, event: Envelope) -> None:
        await self._app.producer.send_and_wait(
            FILES.name,
            event.subject.encode(),
            encode(event),
            partition=None,
            timestamp=None,
            headers=_CLOUDEVENTS_HEADERS,
        )

    async def _dead_letter(self, record: RawRecord, error: str) -> None:
        await publish_dead_letters(
            self._app, [DeadLetter(record.key, record.value, error, record.position, OPTIMIZER_CONSUMER)]
        )


def _render(source: Source, width: int, fmt: VariantFormat) -> Rendered:
    try:
        return render(source, width, fmt)
    except (OSError, ValueError) as exc:
        raise ImageRejected(f"cannot encode the {width}px {fmt.value} variant: {exc}") from None


settings = get_settings()
app = create_app(settings.file_optimizer_group, settings)
files_topic = app.topic(FILES.name, key_serializer="raw", value_serializer="raw")


@app.agent(files_topic, concurrency=1)
async def optimize_images(stream: faust.StreamT[bytes]) -> None:
    pool = AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=2, open=False)
    await pool.open(wait=False)
    optimizer = Optimizer(blob_store(settings), pool, app, settings.file_max_image_pixels)
    try:
        async for event in stream.events():
            await or_dead_letter(app, OPTIMIZER_CONSUMER, [record_of(event)], optimizer.handle)
    finally:
        await pool.close()


@app.timer(interval=settings.file_gc_interval_seconds or 3600.0)
async def collect_garbage() -> None:
    if settings.file_gc_interval_seconds <= 0:
        return
    try:
        async with await psycopg.AsyncConnection.connect(settings.postgres_dsn, autocommit=True) as conn:
            await gc.collect(blob_store(settings), conn, settings.file_gc_grace_seconds)
    except (psycopg.Error, OSError) as exc:
        log.warning("garbage collection skipped: %s: %s", type(exc).__name__, exc)
