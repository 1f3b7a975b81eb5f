"""A 200 MB upload and download through the real file service: the service's memory stays flat (its
resident set, read from /proc, grows by far less than the file) and the stored SHA-256 is the file's."""

import asyncio
import hashlib
import random
import uuid
from pathlib import Path

from api.common.auth import issue_access_token
from tests.support.files import running_file_slice

SIZE = 200 * 1024 * 1024
CHUNK = 1024 * 1024
# Generous against interpreter noise, tiny against the file: the body is never held in memory.
FLAT_BYTES = 48 * 1024 * 1024
BOUNDARY = "hyderabad-large-upload"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Sampler:
    """Reads the service's resident set every 20 ms while a transfer runs; keeps the highest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.pid))
            await asyncio.sleep(0.02)

    def __enter__(self) -> "Sampler":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss_bytes(self.pid))


async def test_a_200_mb_upload_keeps_memory_flat_and_its_sha256(stack, settings, tmp_path):
    digest = hashlib.sha256()
    rng = random.Random(20240115)
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="kind"\r\n\r\ndocument\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="approvals.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    prefix, suffix = b"%PDF-1.7\n", b"\n%%EOF\n"

    async def body():
        yield head
        sent = 0
        for n in range(SIZE // CHUNK):
            chunk = rng.randbytes(CHUNK)
            if n == 0:
                chunk = prefix + chunk[len(prefix) :]
            if n == SIZE // CHUNK - 1:
                chunk = chunk[: -len(suffix)] + suffix
            digest.update(chunk)
            sent += len(chunk)
            yield chunk
        assert sent == SIZE
        yield tail

    async with running_file_slice(
        tmp_path, stack.as_env(), settings.kafka_bootstrap, f"big-{uuid.uuid4().hex[:8]}"
    ) as s:
        pid = s.service.process.pid
        headers = {
            "Authorization": f"Bearer {issue_access_token(f'user-{uuid.uuid4().hex[:10]}', 'USER')}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(len(head) + SIZE + len(tail)),
        }
        async with s.client() as api:
            # A small upload first, so the baseline includes everything a first request loads.
            warm = await api.post(
                "/api/files/upload",
                files={"file": ("w.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")},
                headers={"Authorization": headers["Authorization"]},
            )
            assert warm.status_code == 201, warm.text
            before = rss_bytes(pid)
            with Sampler(pid) as upload_rss:
                answer = await api.post("/api/files/upload", content=body(), headers=headers)
            assert answer.status_code == 201, answer.text
            data = answer.json()["data"]
            assert data["sizeBytes"] == SIZE and data["sha256"] == digest.hexdigest()

            download = hashlib.sha256()
            with Sampler(pid) as download_rss:
                async with api.stream(
                    "GET",
                    answer.headers["Location"],
                    headers={
                        "X-Consistency-Token": answer.headers["X-Consistency-Token"],
                        "Authorization": headers["Authorization"],
                    },
                ) as served:
                    assert served.status_code == 200 and served.headers["content-length"] == str(SIZE)
                    async for chunk in served.aiter_bytes():
                        download.update(chunk)
            assert download.hexdigest() == digest.hexdigest()
        grew_upload, grew_download = upload_rss.peak - before, download_rss.peak - before
        print(
            f"\nservice RSS before {before / 2**20:.1f} MiB; peak during 200 MiB upload +{grew_upload / 2**20:.1f} MiB,"
            f" during download +{grew_download / 2**20:.1f} MiB"
        )
        assert grew_upload < FLAT_BYTES, f"upload grew the service by {grew_upload / 2**20:.1f} MiB"
        assert grew_download < FLAT_BYTES, f"download grew the service by {grew_download / 2**20:.1f} MiB"
