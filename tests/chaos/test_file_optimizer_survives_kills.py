"""Kill the image optimiser with SIGKILL in the middle of a job (some of its variants made, others not),
start it again: every job completes, each variant is made and recorded once (the ones made before the
kill are kept as they were), and each job's `file.optimized` event is one event, however often the
restarted worker produced it."""

import uuid
from collections import defaultdict

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from api.common.auth import issue_access_token
from schemas.topics import FILES
from tests.support.files import jpeg_with_gps, running_file_slice
from tests.support.waiting import eventually

PHOTOS = 6
CONSISTENCY = "X-Consistency-Token"


async def variant_rows(pg, sources):
    cursor = await pg.execute(
        "SELECT source_sha256, width, format, sha256, created_at FROM file_variants WHERE source_sha256 = ANY(%s)",
        (sources,),
    )
    return {(r[0], r[1], r[2]): (r[3], r[4]) for r in await cursor.fetchall()}


async def files_end_offsets(bootstrap):
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(FILES.name, p) for p in range(FILES.partitions)]
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def optimized_events(bootstrap, since, job_ids):
    """Every `file.optimized` message about these jobs produced since `since`: {job id: [event ids]}."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    found = defaultdict(list)
    try:
        consumer.assign(list(since))
        ends = await consumer.end_offsets(list(since))
        for partition, offset in since.items():
            consumer.seek(partition, offset)

        async def behind():
            return [p for p in since if await consumer.position(p) < ends[p]]

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                for message in messages:
                    event = orjson.loads(message.value)
                    if event.get("type") == "file.optimized.v1" and event["data"].get("jobId") in job_ids:
                        found[event["data"]["jobId"]].append((event["id"], event["data"]["variants"]))
    finally:
        await consumer.stop()
    return found


async def test_a_killed_optimiser_completes_every_job_and_makes_each_variant_once(settings, pg, tmp_path):
    owner = f"user-{uuid.uuid4().hex[:10]}"
    auth = {"Authorization": f"Bearer {issue_access_token(owner, 'USER')}"}
    since = await files_end_offsets(settings.kafka_bootstrap)
    suffix = f"chaos-{uuid.uuid4().hex[:8]}"
    async with running_file_slice(
        tmp_path, {}, settings.kafka_bootstrap, suffix, HI_FILE_GC_INTERVAL_SECONDS="0"
    ) as files:
        async with files.client() as api:
            uploads = []
            for n in range(PHOTOS):
                photo = jpeg_with_gps(3000, 2000, seed=uuid.uuid4().int % 10**9)
                answer = await api.post(
                    "/api/files/upload", files={"file": (f"{n}.jpg", photo, "image/jpeg")}, headers=auth
                )
                assert answer.status_code == 201, answer.text
                uploads.append(answer)
            sources = [u.json()["data"]["sha256"] for u in uploads]
            started = await api.post(
                "/api/files/optimize",
                json={"fileIds": [u.json()["data"]["id"] for u in uploads]},
                headers={**auth, CONSISTENCY: uploads[-1].headers[CONSISTENCY]},
            )
            assert started.status_code == 202, started.text
            jobs = started.json()["data"]["jobs"]

            # Kill the worker the moment some job has some of its variants and not all of them.
            def partial(rows):
                per_source = defaultdict(int)
                for source, _, _ in rows:
                    per_source[source] += 1
                return any(0 < count < 6 for count in per_source.values())

            before_kill = await eventually(lambda: variant_rows(pg, sources), partial, within=120, every=0.01)
            files.optimizer.kill()
            at_kill = await variant_rows(pg, sources)
            assert len(at_kill) < PHOTOS * 6, "every job finished before the kill: nothing was cut"
            files.optimizer.start()  # kill() returned once the process was gone: nothing to wait for

            headers = {**auth, CONSISTENCY: started.headers[CONSISTENCY]}

            async def statuses():
                return [(await api.get(job["url"], headers=headers)).json()["data"] for job in jobs]

            done = await eventually(
                statuses, lambda all_: all(j["status"] == "done" for j in all_), within=180, every=1
            )

    assert all(job["variantsDone"] == job["variantsTotal"] == 6 for job in done)
    final = await variant_rows(pg, sources)
    assert len(final) == PHOTOS * 6
    assert {(width, fmt) for _, width, fmt in final} == {(w, f) for w in (320, 768, 1600) for f in ("webp", "jpeg")}
    # Made once: what existed when the worker died is exactly what exists now, same bytes, same time.
    assert len(before_kill) >= 1
    for key, made in at_kill.items():
        assert final[key] == made
    for source, width, fmt in final:
        sha = final[(source, width, fmt)][0]
        assert (files.blob_dir / "sha256" / sha[:2] / sha).exists()

    events = await optimized_events(settings.kafka_bootstrap, since, {job["jobId"] for job in jobs})
    assert set(events) == {job["jobId"] for job in jobs}
    for job_id, produced in events.items():
        ids = {event_id for event_id, _ in produced}
        assert len(ids) == 1, f"{job_id}: {len(ids)} different file.optimized events"
        variants = [orjson.dumps(v) for _, v in produced]
        assert len(set(variants)) == 1 and len(produced[0][1]) == 6
