"""The image optimiser closes a job it cannot finish for a reason nobody foresaw: the owner sees `failed`
with a reason, not `queued` for ever, and the request is dead-lettered for a developer."""

from schemas.codec import decode, encode
from schemas.envelope import new_event
from schemas.files import FILE_OPTIMIZATION_FAILED, FILE_OPTIMIZE_REQUESTED, FileOptimizeRequested
from schemas.topics import DEAD_LETTERS, FILES
from storage.blobs import LocalBlobStore
from streams.files.optimizer_app import Optimizer
from streams.positions import RawRecord, SourcePosition


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send_and_wait(self, topic, key, value, *, partition, timestamp, headers):
        self.sent.append((topic, key, value))


class AppWithProducer:
    def __init__(self) -> None:
        self.producer = RecordingProducer()


class PoolWithABug:
    """Stands for a defect in the optimiser's own code, met on its first read."""

    def connection(self):
        raise RuntimeError("a bug nobody foresaw")


async def test_an_unforeseen_failure_closes_the_job_as_failed_and_dead_letters_the_request(tmp_path):
    request = FileOptimizeRequested(
        job_id="job-1", file_id="file-1", sha256="a" * 64, content_type="image/png", requested_by="user-1"
    )
    envelope = new_event(
        type=FILE_OPTIMIZE_REQUESTED, subject="file-1", data=request.to_wire(), service="file", userid="user-1"
    )
    record = RawRecord(b"file-1", encode(envelope), SourcePosition(FILES.name, 0, 7))
    app = AppWithProducer()
    optimizer = Optimizer(LocalBlobStore(tmp_path), PoolWithABug(), app, max_pixels=1_000_000)

    await optimizer.handle([record])

    [(topic, key, value), (dead_topic, _, dead_value)] = app.producer.sent
    failed = decode(value)
    assert (topic, key, failed.type) == (FILES.name, b"file-1", FILE_OPTIMIZATION_FAILED)
    assert failed.data["jobId"] == "job-1" and "RuntimeError" in failed.data["error"]
    assert "a bug nobody foresaw" not in failed.data["error"], "the owner is told that it failed, not our internals"
    assert (dead_topic, dead_value) == (DEAD_LETTERS.name, record.value)
