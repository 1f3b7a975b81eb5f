# ruff: noqa: E402  (the project root goes on sys.path before the imports: tests.support is not installed)
"""Benchmark: the file slice. Prints numbers; asserts nothing about speed.

1. Upload: a file streamed through `POST /api/files/upload` (multipart, type check, SHA-256, blob
   commit, event) in MB/s, next to a plain copy of the same file on the same disk (`shutil.copyfile`)
   and a copy that also hashes (what the upload must do at least).
2. Download: `GET /api/files/{id}` streamed to nowhere, in MB/s, next to reading the blob file directly.
3. Optimisation: photos optimised per second by one `file-optimizer` worker (six variants each:
   320/768/1600 px in WebP and JPEG), from the 202 to the last job done.

Runs its own file service, file projection and optimiser (own consumer groups starting at the topics'
end, own blob directory under the state directory, so the same disk as a plain copy), against the
running stack (`make up prepare`). The client, the service and the workers share the machine's cores.

    .venv/bin/python bench/files.py [--size-mb 200] [--rounds 3] [--photos 12] [--photo-size 4000x3000]
"""

import argparse
import asyncio
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

THIS_FILE = Path(__file__).resolve()
ROOT = THIS_FILE.parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/files.py`

import httpx

from api.common.auth import issue_access_token
from config import get_settings
from tests.support.files import jpeg_with_gps, running_file_slice

CHUNK = 1024 * 1024
BOUNDARY = "bench-files-boundary"


def make_document(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        written = 0
        first = True
        while written < size:
            chunk = bytearray(CHUNK if size - written >= CHUNK else size - written)
            chunk[: min(len(chunk), 64)] = hashlib.sha256(str(written).encode()).digest() * 2
            if first:
                chunk[:9] = b"%PDF-1.7\n"
                first = False
            if written + len(chunk) == size:
                chunk[-7:] = b"\n%%EOF\n"
            out.write(chunk)
            digest.update(chunk)
            written += len(chunk)
    return digest.hexdigest()


def mb_per_s(size: int, seconds: float) -> float:
    return size / (1024 * 1024) / seconds


async def upload(api: httpx.AsyncClient, auth: dict[str, str], path: Path) -> tuple[float, httpx.Response]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    size = await asyncio.to_thread(lambda: path.stat().st_size)

    async def body():
        yield head
        with path.open("rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk
        yield tail

    headers = {
        **auth,
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Content-Length": str(len(head) + size + len(tail)),
    }
    started = time.perf_counter()
    answer = await api.post("/api/files/upload", content=body(), headers=headers)
    return time.perf_counter() - started, answer


async def download(api: httpx.AsyncClient, location: str, headers: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    received = 0
    async with api.stream("GET", location, headers=headers) as served:
        served.raise_for_status()
        async for chunk in served.aiter_raw(CHUNK):
            received += len(chunk)
    return time.perf_counter() - started, received


def plain_copy(source: Path, target: Path) -> float:
    started = time.perf_counter()
    shutil.copyfile(source, target)
    return time.perf_counter() - started


def hashing_copy(source: Path, target: Path) -> float:
    started = time.perf_counter()
    digest = hashlib.sha256()
    with source.open("rb") as reader, target.open("wb") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    return time.perf_counter() - started


def plain_read(path: Path) -> float:
    started = time.perf_counter()
    with path.open("rb") as reader:
        while reader.read(CHUNK):
            pass
    return time.perf_counter() - started


async def transfers(
    api: httpx.AsyncClient, auth: dict[str, str], work: Path, blobs: Path, size: int, rounds: int
) -> None:
    up, down, copy, hashed, read = [], [], [], [], []
    for n in range(rounds):
        source = work / f"deed-{n}.pdf"
        expected = make_document(source, size)  # different bytes each round: every upload stores anew
        seconds, answer = await upload(api, auth, source)
        assert answer.status_code == 201, answer.text
        assert answer.json()["data"]["sha256"] == expected
        up.append(seconds)
        token = {**auth, "X-Consistency-Token": answer.headers["X-Consistency-Token"]}
        seconds, received = await download(api, answer.headers["Location"], token)
        assert received == size
        down.append(seconds)
        copy.append(plain_copy(source, work / f"copy-{n}.pdf"))
        hashed.append(hashing_copy(source, work / f"hashed-{n}.pdf"))
        read.append(plain_read(blobs / "sha256" / expected[:2] / expected))
        for leftover in (source, work / f"copy-{n}.pdf", work / f"hashed-{n}.pdf"):
            leftover.unlink()
    mb = size / (1024 * 1024)
    print(f"\ntransfers of a {mb:.0f} MiB file, median of {rounds} rounds (same disk, page cache warm):")
    print(f"  upload   POST /api/files/upload       {mb_per_s(size, statistics.median(up)):8.1f} MB/s")
    print(f"  plain copy (shutil.copyfile)          {mb_per_s(size, statistics.median(copy)):8.1f} MB/s")
    print(f"  copy + sha256 (what an upload must do) {mb_per_s(size, statistics.median(hashed)):7.1f} MB/s")
    print(f"  download GET /api/files/{{id}}          {mb_per_s(size, statistics.median(down)):8.1f} MB/s")
    print(f"  plain read of the blob file           {mb_per_s(size, statistics.median(read)):8.1f} MB/s")


async def optimisation(api: httpx.AsyncClient, auth: dict[str, str], photos: int, width: int, height: int) -> None:
    print(f"\noptimising {photos} photos of {width}x{height} (6 variants each), one optimiser worker:")
    ids, token = [], None
    generated = time.perf_counter()
    payloads = [jpeg_with_gps(width, height, seed=uuid.uuid4().int % 10**9, quality=88) for _ in range(photos)]
    each = statistics.mean(map(len, payloads)) / 1e6
    print(f"  (made the photos in {time.perf_counter() - generated:.1f} s, {each:.1f} MB each)")
    for n, photo in enumerate(payloads):
        answer = await api.post("/api/files/upload", files={"file": (f"{n}.jpg", photo, "image/jpeg")}, headers=auth)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["data"]["id"])
        token = answer.headers["X-Consistency-Token"]
    assert token is not None
    started = time.perf_counter()
    queued = await api.post(
        "/api/files/optimize", json={"fileIds": ids}, headers={**auth, "X-Consistency-Token": token}
    )
    assert queued.status_code == 202, queued.text
    jobs = [job["url"] for job in queued.json()["data"]["jobs"]]
    headers = {**auth, "X-Consistency-Token": queued.headers["X-Consistency-Token"]}
    # One job polled at a time, every 50 ms: the bench must not steal the optimiser's CPU.
    for url in jobs:
        while True:
            job = (await api.get(url, headers=headers)).json()["data"]
            if job["status"] == "failed":
                raise SystemExit(f"job failed: {job['error']}")
            if job["status"] == "done":
                break
            await asyncio.sleep(0.05)
    seconds = time.perf_counter() - started
    print(f"  {photos / seconds:.2f} photos/s ({photos * 6 / seconds:.1f} variants/s, {seconds:.1f} s in all)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--photo-size", default="4000x3000")
    args = parser.parse_args()
    settings = get_settings()
    width, height = (int(x) for x in args.photo_size.split("x"))
    base = settings.state_dir / "bench"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix="files-") as tmp:
        work = Path(tmp)
        auth = {"Authorization": f"Bearer {issue_access_token(f'user-bench-{uuid.uuid4().hex[:8]}', 'USER')}"}
        async with running_file_slice(
            work, {}, settings.kafka_bootstrap, f"bench-{uuid.uuid4().hex[:8]}", HI_FILE_GC_INTERVAL_SECONDS="0"
        ) as files:
            async with httpx.AsyncClient(base_url=files.service.url, timeout=300) as api:
                await transfers(api, auth, work, files.blob_dir, args.size_mb * 1024 * 1024, args.rounds)
                await optimisation(api, auth, args.photos, width, height)


if __name__ == "__main__":
    asyncio.run(main())
