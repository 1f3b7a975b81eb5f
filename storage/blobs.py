"""The blob store interface and its local-disk implementation.

A blob is named by the SHA-256 of its bytes: the same bytes stored twice are one blob, a name never
changes meaning, and a download's ETag is the name. Writing goes through a `BlobWriter`, a temporary
file the bytes are spooled to and hashed on the way; `commit` gives it its content address. The
methods are synchronous (disk and boto3 are blocking); async callers run them with `asyncio.to_thread`,
except `BlobWriter.write`, which is a plain buffered file write, cheap enough for the event loop.

Nothing here knows which file a blob belongs to: the files read model does, and the garbage
collector (`streams/files/gc.py`) removes blobs no live file refers to once they are older than a
grace period (`inventory` gives each blob's last-touched time; `commit` of existing bytes touches it).
"""

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from config import Settings

CHUNK_BYTES = 256 * 1024
# Downloads read 1 MiB at a time: fewer thread hops and socket writes per megabyte served.
READ_CHUNK_BYTES = 1024 * 1024
SHA256_HEX = frozenset("0123456789abcdef")


def valid_sha256(name: str) -> bool:
    return len(name) == 64 and set(name) <= SHA256_HEX


@dataclass(frozen=True)
class Blob:
    sha256: str
    size: int


class BlobWriter:
    """Bytes on their way in: a temporary file, hashed as it is written. Read `sha256` and `size` once
    written; `head(n)`/`tail(n)` read back the ends for type checks without holding the file in memory."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=directory, prefix="incoming-")
        self.path = Path(name)
        self._file = os.fdopen(handle, "wb")
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._digest.update(data)
        self._file.write(data)
        self.size += len(data)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def head(self, n: int) -> bytes:
        self._flush()
        with self.path.open("rb") as handle:
            return handle.read(n)

    def tail(self, n: int) -> bytes:
        self._flush()
        with self.path.open("rb") as handle:
            handle.seek(max(0, self.size - n))
            return handle.read()

    def _flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def discard(self) -> None:
        self.close()
        with suppress(FileNotFoundError):
            self.path.unlink()


class BlobStore(Protocol):
    """What the services and workers need of storage; `LocalBlobStore` and `storage.s3.S3BlobStore`."""

    def writer(self) -> BlobWriter:
        """A fresh temporary file to spool bytes into (always on local disk)."""
        ...

    def commit(self, writer: BlobWriter) -> Blob:
        """Store the written bytes under their SHA-256 and remove the temporary file. Storing bytes that
        are already there is harmless (and refreshes their last-touched time)."""
        ...

    def size(self, sha256: str) -> int | None:
        """The blob's size, or None when there is no such blob."""
        ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes `start..end` (inclusive, like HTTP ranges; `end=None` to the last), in chunks.
        Raises FileNotFoundError when the blob is gone."""
        ...

    def local_path(self, sha256: str) -> AbstractContextManager[Path]:
        """A context manager giving a local file with the blob's bytes (for Pillow)."""
        ...

    def delete(self, sha256: str) -> None:
        """Remove the blob; a missing blob is not an error."""
        ...

    def inventory(self) -> Iterator[tuple[str, float]]:
        """Every blob as (sha256, last touched, epoch seconds), for the garbage collector."""
        ...

    def touched(self, sha256: str) -> float | None:
        """The blob's last-touched time now (the collector re-checks just before deleting)."""
        ...

    def discard_stale_incoming(self, older_than_seconds: float) -> int:
        """Remove temporary files left behind by a process killed mid-upload; how many went."""
        ...


def discard_stale(directory: Path, older_than_seconds: float) -> int:
    removed = 0
    if not directory.exists():
        return 0
    cutoff = time.time() - older_than_seconds
    for entry in os.scandir(directory):
        with suppress(FileNotFoundError):
            if entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
    return removed


class LocalBlobStore:
    """`<root>/sha256/<first two hex>/<sha256>`, spooling in `<root>/incoming`.

    The layout predates this module (property images were stored so), and keeps working as it was.
    A commit is an `os.replace` within one file system: atomic, so a reader sees a whole blob or none.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"

    def path(self, sha256: str) -> Path:
        if not valid_sha256(sha256):
            raise ValueError("a blob name is 64 lower-case hex digits")
        return self.root / "sha256" / sha256[:2] / sha256

    def writer(self) -> BlobWriter:
        return BlobWriter(self.incoming)

    def commit(self, writer: BlobWriter) -> Blob:
        writer.close()
        target = self.path(writer.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            # Same bytes, same name: keep the one there, and tell the collector it is wanted again.
            os.utime(target)
            writer.discard()
        else:
            os.replace(writer.path, target)
        return Blob(writer.sha256, writer.size)

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        handle = self.path(sha256).open("rb")  # raises FileNotFoundError before the first chunk

        def chunks() -> Iterator[bytes]:
            with handle:
                handle.seek(start)
                remaining = None if end is None else end - start + 1
                while remaining is None or remaining > 0:
                    chunk = handle.read(READ_CHUNK_BYTES if remaining is None else min(READ_CHUNK_BYTES, remaining))
                    if not chunk:
                        return
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk

        return chunks()

    @contextmanager
    def local_path(self, sha256: str) -> Iterator[Path]:
        path = self.path(sha256)
        if not path.exists():
            raise FileNotFoundError(f"blob {sha256} is not stored")
        yield path

    def delete(self, sha256: str) -> None:
        with suppress(FileNotFoundError):
            self.path(sha256).unlink()

    def inventory(self) -> Iterator[tuple[str, float]]:
        base = self.root / "sha256"
        if not base.exists():
            return
        for shard in base.iterdir():
            if not shard.is_dir():
                continue
            for entry in os.scandir(shard):
                if valid_sha256(entry.name):
                    with suppress(FileNotFoundError):
                        yield entry.name, entry.stat().st_mtime

    def touched(self, sha256: str) -> float | None:
        try:
            return self.path(sha256).stat().st_mtime
        except FileNotFoundError:
            return None

    def discard_stale_incoming(self, older_than_seconds: float) -> int:
        return discard_stale(self.incoming, older_than_seconds)


def blob_store(settings: "Settings") -> BlobStore:
    """The store the settings choose: local disk (default) or S3 (`HI_BLOB_BACKEND=s3`)."""
    if settings.blob_backend == "s3":
        from storage.s3 import S3BlobStore  # boto3 is only imported where S3 is used

        return S3BlobStore.from_settings(settings)
    return LocalBlobStore(settings.blobs_dir)
