"""Helpers for tests of the file slice: real images and PDFs made here, the workers and the service."""

import io
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from api.services import by_name
from schemas.topics import FILES, USERS
from tests.support.processes import WorkerProcess
from tests.support.property_projection import start_group_at_end
from tests.support.services import ServiceProcess

GPS_IFD = 0x8825
# Hyderabad, Gachibowli: the kind of location that must never leak with a photo of a home.
GPS = {1: "N", 2: (17.0, 26.0, 24.0), 3: "E", 4: (78.0, 20.0, 53.0)}


def jpeg_with_gps(width: int = 2000, height: int = 1500, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG (noise + gradient, so it compresses like a photo) carrying EXIF GPS and XMP."""
    rng = random.Random(seed)
    image = Image.effect_noise((width, height), 40 + seed % 7).convert("RGB")
    overlay = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image = Image.blend(image, overlay, 0.5)
    for _ in range(16):  # the seed marks the bytes: different seeds, different files (and hashes)
        image.putpixel((rng.randrange(width), rng.randrange(height)), (rng.randrange(256), 0, rng.randrange(256)))
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0110] = f"Model {rng.randint(1, 99)}"
    exif[0x0112] = 1  # orientation
    exif.get_ifd(GPS_IFD).update(GPS)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><exif:GPSLatitude>17,26.4N</exif:GPSLatitude></x:xmpmeta>'
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, exif=exif, xmp=xmp)
    return buffer.getvalue()


def png_image(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def webp_image(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 30, 200)).save(buffer, "WEBP")
    return buffer.getvalue()


def pdf_document(body_bytes: int = 2000) -> bytes:
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + os.urandom(body_bytes) + b"\ntrailer\n<<>>\n%%EOF\n"


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG announcing 900 million pixels: IHDR says so, the data is a few bytes of zlib."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@dataclass
class FileSlice:
    service: ServiceProcess
    projection: WorkerProcess
    optimizer: WorkerProcess
    blob_dir: Path

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.service.url, timeout=120)


def file_env(blob_dir: Path, suffix: str, **extra: str) -> dict[str, str]:
    return {
        "HI_BLOB_DIR": str(blob_dir),
        "HI_FILE_PROJECTION_GROUP": f"file-projection-{suffix}",
        "HI_FILE_OPTIMIZER_GROUP": f"file-optimizer-{suffix}",
        **extra,
    }


def projection_worker(env: dict[str, str], log_dir: Path) -> WorkerProcess:
    return WorkerProcess("streams.files.projection_worker", env, log_dir / "file-projection.log")


def optimizer_worker(env: dict[str, str], log_dir: Path) -> WorkerProcess:
    return WorkerProcess("streams.files.optimizer_worker", env, log_dir / "file-optimizer.log")


async def start_groups_at_end(bootstrap: str, env: dict[str, str]) -> None:
    """Fresh groups read only what the test produces, not the shared topics' history."""
    await start_group_at_end(bootstrap, env["HI_FILE_PROJECTION_GROUP"], (FILES.name, USERS.name))
    await start_group_at_end(bootstrap, env["HI_FILE_OPTIMIZER_GROUP"], (FILES.name,))


@asynccontextmanager
async def running_file_slice(
    log_dir: Path, stack_env: dict[str, str], bootstrap: str, suffix: str, **extra: str
) -> AsyncIterator[FileSlice]:
    blob_dir = log_dir / "blobs"
    env = {**stack_env, **file_env(blob_dir, suffix, **extra)}
    await start_groups_at_end(bootstrap, env)
    projection, optimizer = projection_worker(env, log_dir), optimizer_worker(env, log_dir)
    service = ServiceProcess(by_name("file"), log_dir / "file-service.log", env)
    try:
        projection.start()
        optimizer.start()
        await service.start()
        yield FileSlice(service, projection, optimizer, blob_dir)
    finally:
        service.stop()
        projection.stop()
        optimizer.stop()
