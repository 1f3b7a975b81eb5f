"""Kill the archive worker with SIGKILL twice while 10,000 events arrive: the store converges to
exactly the 10,000 events produced, each row naming the record it came from (at-least-once delivery + an
idempotent sink)."""

import asyncio
import random
import uuid

from tests.support.archive import archive_worker, archived, archived_positions, produce_marked
from tests.support.waiting import eventually

TOTAL = 10_000
WAVES = 5


async def test_killing_the_archive_worker_twice_loses_and_duplicates_nothing(producer, pg, run_id, tmp_path):
    chaos_run = f"{run_id}-chaos"
    worker = archive_worker(f"event-archive-chaos-{uuid.uuid4().hex[:8]}", tmp_path)
    worker.start()
    try:
        per_wave = TOTAL // WAVES
        kills = 0
        produced = {}
        for wave in range(WAVES):
            produced |= await produce_marked(producer, chaos_run, per_wave, start=wave * per_wave)
            if wave in (1, 3):
                # Kill once some of the wave is archived and some is not: mid-batch, offsets uncommitted.
                archived_before = wave * per_wave
                await eventually(
                    lambda: archived(pg, chaos_run), until=lambda rows, floor=archived_before: rows > floor, within=90
                )
                await asyncio.sleep(random.uniform(0.0, 0.3))
                worker.kill()
                kills += 1
                worker.start()
        assert kills == 2
        rows = await eventually(
            lambda: archived(pg, chaos_run), until=lambda rows: rows >= TOTAL, within=180, every=0.5
        )
        assert rows == TOTAL
        assert await archived_positions(pg, chaos_run) == produced
    finally:
        worker.stop()
