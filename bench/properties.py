# ruff: noqa: E402  (the project root goes on sys.path before the imports: tests.support is not installed)
"""Benchmark: the property slice end to end: create throughput and latency, GET req/s next to a bare
FastAPI app, and how soon a create is visible in Postgres, Redis and OpenSearch.

    .venv/bin/python bench/properties.py [--rates 250,500,1000] [--seconds 10] [--freshness 200]

Needs the stack up (`make up`, `make prepare`) and no other property decider/projection running (they
share the real consumer groups, so they would take partitions away). Starts what it measures itself:
the decider and projection workers and the property service on a free port
(tests/support/properties.running_property_slice), plus `bench/echo_app.py` under the same uvicorn
command line. The HTTP load comes from a separate load-generator process (this file with
`--load-generator`), so its CPU is visible and reported next to the server's. It uses aiohttp (there
with Faust), not httpx: on this machine httpx's AsyncClient managed ~220 req/s with 32 concurrent
requests against the echo app where aiohttp managed ~4,800, so httpx would have measured itself.

Measures, in one run:
  1. POST /api/properties at fixed offered rates (open loop: requests are sent on schedule whatever
     the answers do; latency counts from the scheduled time, so queueing is not hidden): achieved
     req/s, p50/p99, errors; then where a create's time goes, from the Kafka record timestamps of its
     command, event and outcome; the CPU each process used; how long the projection took to catch up.
  2. GET /api/properties/{id} and the echo app, closed loop, the same clients and concurrency: req/s
     and the ratio (target >= 0.6).
  3. Freshness: for N creates, the time from the 201 to the row in Postgres, the key in Redis, the
     document in OpenSearch (realtime GET) and in search results (after refresh): p50/p99.
  4. The cost of metrics: the same GETs against a second property service started with
     HI_METRICS_ENABLED=false, alternated with the one that counts (3 rounds each, same run).
     `--only metrics-cost` runs this part alone (after the listings it reads are made).
Listings are `ops/demo_data.py`'s, by bench users. Stops everything it started; the listings stay,
as any listing does in an event-sourced system (the event log is the record).
"""

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

THIS_FILE = Path(__file__).resolve()
ROOT = THIS_FILE.parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/properties.py`

import aiohttp
import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from api.common.auth import issue_access_token
from api.services import ServiceSpec, by_name
from config import get_settings
from ops.demo_data import create_listings, demo_listing
from schemas.codec import decode
from schemas.outcomes import CommandOutcome
from schemas.topics import COMMAND_OUTCOMES, PROPERTIES, PROPERTY_COMMANDS
from tests.support.properties import PropertySlice, running_property_slice
from tests.support.services import ServiceProcess, free_port
from tests.support.waiting import eventually

TARGET_GET_RATIO = 0.6
TARGET_FRESH_MS = {"postgres": 100, "redis": 100, "opensearch (GET _doc)": 1500, "opensearch (search)": 1500}
LOG_DIR = ROOT / ".state" / "logs" / "bench-properties"


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ---------------------------------------------------------------- load generator (its own process)


async def _open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """POST creates on a fixed schedule: request i is due at start + i/rate, sent then even if earlier
    ones have not answered. Returns one record per request (epoch seconds)."""
    rate, total = spec["rate"], int(spec["rate"] * spec["seconds"])
    owners = [f"user-bench-{n:02d}" for n in range(20)]
    tokens = {owner: issue_access_token(owner, "USER") for owner in owners}
    bodies = [demo_listing(i, spec["seed"]).body for i in range(min(total, 2000))]
    records: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=spec["connections"])
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(spec["url"], connector=connector, timeout=timeout) as client:

        async def one(i: int, due: float) -> None:
            sent = time.time()
            headers = {"Authorization": f"Bearer {tokens[owners[i % len(owners)]]}"}
            status: int | str
            try:
                async with client.post("/api/properties", json=bodies[i % len(bodies)], headers=headers) as answer:
                    status = answer.status
                    property_id = (await answer.json())["data"]["id"] if status == 201 else None
                    await answer.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, property_id = type(exc).__name__, None
            records.append({"due": due, "sent": sent, "answered": time.time(), "status": status, "id": property_id})

        tasks = []
        start_mono, start_wall = time.perf_counter(), time.time()
        for i in range(total):
            delay = start_mono + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, start_wall + i / rate)))
        await asyncio.gather(*tasks)
    return {"start": start_wall, "records": records, "cpu": time.process_time()}


async def _closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """`concurrency` clients, each sending its next GET as soon as the last one answered."""
    paths, latencies, errors = spec["paths"], [], 0
    connector = aiohttp.TCPConnector(limit=spec["concurrency"])
    async with aiohttp.ClientSession(spec["url"], connector=connector) as client:
        for path in paths[: spec["concurrency"]]:  # warm: connections open, caches hot
            async with client.get(path) as answer:
                await answer.read()
        deadline = time.perf_counter() + spec["seconds"]

        async def client_loop(n: int) -> None:
            nonlocal errors
            rng = random.Random(n)
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with client.get(rng.choice(paths)) as answer:
                    await answer.read()
                    errors += answer.status != 200
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client_loop(n) for n in range(spec["concurrency"])))
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": elapsed, "latencies": latencies, "errors": errors}


def load_generator(spec_json: str) -> None:
    spec = json.loads(spec_json)
    run = _open_loop if spec["mode"] == "open" else _closed_loop
    print(json.dumps(asyncio.run(run(spec))))


# ---------------------------------------------------------------- CPU accounting from /proc


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            tree.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    return tree


def _cpu_seconds(root: int, tree: dict[int, list[int]]) -> float:
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            # utime, stime, and cutime, cstime: a reaped child (a Postgres backend) stays counted.
            total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
        todo.extend(tree.get(pid, []))
    return total


@dataclass
class CpuMeter:
    """CPU seconds of named process trees between `start()` and `stop()`, as % of one core."""

    pids: dict[str, int]
    _before: dict[str, float] = field(default_factory=dict)
    _started: float = 0.0

    def snapshot(self) -> dict[str, float]:
        tree = _children()
        return {name: _cpu_seconds(pid, tree) for name, pid in self.pids.items()}

    def start(self) -> None:
        self._before, self._started = self.snapshot(), time.perf_counter()

    def stop(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self._started
        after = self.snapshot()
        return {name: 100 * (after[name] - self._before[name]) / elapsed for name in self.pids}


def stack_pids(slice_: PropertySlice) -> dict[str, int]:
    pids = {"service": slice_.service.process.pid}  # type: ignore[union-attr]
    for worker in slice_.workers:
        pids[worker.module.rsplit(".", 1)[1].removesuffix("_app").removesuffix("_worker")] = worker.process.pid  # type: ignore[union-attr]
    for part in ("kafka", "postgres", "redis", "opensearch"):
        pid_file = get_settings().state_dir / "run" / f"{part}.pid"
        if pid_file.exists():
            pids[part] = int(pid_file.read_text().split()[0])
    return pids


def cpu_line(usage: dict[str, float], loadgen_cpu_pct: float | None = None) -> str:
    parts = [f"{name} {value:.0f}%" for name, value in usage.items()]
    if loadgen_cpu_pct is not None:
        parts.append(f"load generator {loadgen_cpu_pct:.0f}%")
    return "cpu (% of one core): " + ", ".join(parts) + f"  [{os.cpu_count()} cores]"


async def run_load_generator(spec: dict[str, Any]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(THIS_FILE),
        "--load-generator",
        json.dumps(spec),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed ({process.returncode})")
    return json.loads(out)


# ---------------------------------------------------------------- 1. creates at fixed offered rates


CREATE_TOPICS = (PROPERTY_COMMANDS, PROPERTIES, COMMAND_OUTCOMES)


async def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.end_offsets(
            [TopicPartition(t.name, p) for t in CREATE_TOPICS for p in range(t.partitions)]
        )
    finally:
        await consumer.stop()


async def record_times(bootstrap: str, start: dict[TopicPartition, int]) -> dict[str, dict[str, float]]:
    """Per property id, the (producer-set) timestamps in seconds of its command, event and outcome
    records written since `start`."""
    end = await end_offsets(bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    times: dict[str, dict[str, float]] = {}
    try:
        wanted = [tp for tp in start if end[tp] > start[tp]]
        consumer.assign(wanted)
        for tp in wanted:
            consumer.seek(tp, start[tp])
        remaining = {tp: end[tp] for tp in wanted}
        while remaining:
            for tp, messages in (await consumer.getmany(timeout_ms=1000, max_records=5000)).items():
                for message in messages:
                    if tp.topic == COMMAND_OUTCOMES.name:
                        key, stage = CommandOutcome.model_validate(decode(message.value).data).aggregate_id, "outcome"
                    else:
                        key = message.key.decode()
                        stage = "command" if tp.topic == PROPERTY_COMMANDS.name else "event"
                    times.setdefault(key, {}).setdefault(stage, message.timestamp / 1000)
                if messages and messages[-1].offset + 1 >= remaining.get(tp, 0):
                    remaining.pop(tp, None)
    finally:
        await consumer.stop()
    return times


def stage_lines(records: Sequence[dict[str, Any]], times: dict[str, dict[str, float]]) -> list[str]:
    """Where a create's time goes, per stage (ms; Kafka timestamps have 1 ms resolution)."""
    stages: dict[str, list[float]] = {
        "client send -> command produced (HTTP, auth, build)": [],
        "command produced -> event produced (produce + decider fetch/decide)": [],
        "event produced -> outcome produced (decider awaits event ack)": [],
        "outcome produced -> 201 at client (ack + service fetch + answer)": [],
    }
    names = list(stages)
    for record in records:
        t = times.get(record["id"] or "", {})
        if {"command", "event", "outcome"} <= t.keys():
            points = (record["sent"], t["command"], t["event"], t["outcome"], record["answered"])
            for name, (a, b) in zip(names, itertools.pairwise(points), strict=True):
                stages[name].append(1000 * (b - a))
    return [f"    {name:<72} p50 {pct(v, 50):7.1f}  p99 {pct(v, 99):7.1f} ms" for name, v in stages.items()]


async def wait_for_decider(bootstrap: str, before: dict[TopicPartition, int], within: float = 300) -> float:
    """Until every command sent since `before` has its outcome: commands a client gave up on are still
    decided, and the next measurement should not pay for them."""
    started = time.perf_counter()

    async def unanswered() -> int:
        end = await end_offsets(bootstrap)
        sent = {t.name: sum(end[tp] - before[tp] for tp in end if tp.topic == t.name) for t in CREATE_TOPICS}
        return sent[PROPERTY_COMMANDS.name] - sent[COMMAND_OUTCOMES.name]

    await eventually(unanswered, lambda n: n <= 0, within=within, every=0.5)
    return time.perf_counter() - started


async def wait_until_projected(pg_dsn: str, property_id: str, within: float = 120) -> float:
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:

        async def present() -> bool:
            cursor = await conn.execute("SELECT 1 FROM properties WHERE id = %s", (property_id,))
            return await cursor.fetchone() is not None

        await eventually(present, bool, within=within, every=0.05)
    return time.perf_counter() - started


async def bench_create_rate(slice_: PropertySlice, rate: int, seconds: float, meter: CpuMeter, seed: int) -> None:
    settings = get_settings()
    before = await end_offsets(settings.kafka_bootstrap)
    spec = {"mode": "open", "url": slice_.service.url, "rate": rate, "seconds": seconds, "seed": seed}
    meter.start()
    result = await run_load_generator({**spec, "connections": 512})
    usage = meter.stop()
    records = result["records"]
    ok = [r for r in records if r["status"] == 201]
    latencies = [1000 * (r["answered"] - r["due"]) for r in ok]
    span = max(r["answered"] for r in records) - result["start"]
    late = pct([1000 * (r["sent"] - r["due"]) for r in records], 99)
    print(
        f"  offered {rate:>5}/s  achieved {len(ok) / span:7.1f}/s  p50 {pct(latencies, 50):7.1f} ms"
        f"  p99 {pct(latencies, 99):7.1f} ms  errors {len(records) - len(ok)}/{len(records)}"
        f"  (sender p99 late {late:.1f} ms)"
    )
    errors: dict[str, int] = {}
    for r in records:
        if r["status"] != 201:
            errors[str(r["status"])] = errors.get(str(r["status"]), 0) + 1
    if errors:
        print(f"    errors by status: {errors}")
    print("    " + cpu_line(usage, 100 * result["cpu"] / span))
    times = await record_times(settings.kafka_bootstrap, before)
    for line in stage_lines(ok, times):
        print(line)
    outcomes = sorted(t["outcome"] for t in times.values() if "outcome" in t)
    if len(outcomes) > 1:
        print(f"    decider answered {len(outcomes) / (outcomes[-1] - outcomes[0]):.0f} commands/s over the step")
    backlog = await wait_for_decider(settings.kafka_bootstrap, before)
    print(f"    decider finished its backlog {backlog:.1f} s after the load generator stopped")
    if ok:
        last = max(ok, key=lambda r: r["answered"])
        caught_up = await wait_until_projected(settings.postgres_dsn, last["id"])
        print(f"    projection (Postgres) caught up {caught_up:.1f} s after that")


# ---------------------------------------------------------------- 2. GET vs a bare FastAPI app


@asynccontextmanager
async def echo_service() -> AsyncIterator[str]:
    """bench/echo_app.py under the same uvicorn command line as the services (tests/support/services.py)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (LOG_DIR / "echo.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *ServiceSpec("echo", "bench.echo_app:app", port).command(),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        async def status() -> int | None:
            try:
                async with httpx.AsyncClient(base_url=url, timeout=2) as client:
                    return (await client.get("/echo/ping")).status_code
            except httpx.TransportError:
                return None

        await eventually(status, lambda s: s == 200, within=30)
        yield url
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)


async def closed_loop(url: str, paths: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    spec = {"mode": "closed", "url": url, "paths": paths, "concurrency": concurrency, "seconds": seconds}
    return await run_load_generator(spec)


async def bench_get(slice_: PropertySlice, ids: list[str], concurrency: int, seconds: float, meter: CpuMeter) -> None:
    meter.start()
    details = await closed_loop(slice_.service.url, [f"/api/properties/{i}" for i in ids], concurrency, seconds)
    usage = meter.stop()
    async with echo_service() as echo_url:
        echo = await closed_loop(echo_url, [f"/echo/{i}" for i in ids], concurrency, seconds)
    rates = {}
    for name, result in (("GET /api/properties/{id}", details), ("bare FastAPI echo", echo)):
        rates[name] = result["requests"] / result["seconds"]
        ms = [1000 * s for s in result["latencies"]]
        print(
            f"  {name:<26} {rates[name]:8.0f} req/s  p50 {pct(ms, 50):6.1f} ms  p99 {pct(ms, 99):6.1f} ms"
            f"  errors {result['errors']}"
        )
    ratio = rates["GET /api/properties/{id}"] / rates["bare FastAPI echo"]
    verdict = "ok" if ratio >= TARGET_GET_RATIO else "BELOW TARGET"
    print(f"  ratio details/echo         {ratio:8.2f}   (target >= {TARGET_GET_RATIO})  {verdict}")
    print("  during the details run: " + cpu_line(usage))


async def bench_metrics_cost(slice_: PropertySlice, ids: list[str], concurrency: int, seconds: float) -> None:
    """Alternates (so the machine's other load falls on both alike) the counting service and one without
    request metrics; the rounds' medians and their ratio."""
    without = ServiceProcess(
        by_name("property"), LOG_DIR / "property-service-no-metrics.log", {"HI_METRICS_ENABLED": "false"}
    )
    await without.start()
    paths = [f"/api/properties/{i}" for i in ids]
    rates: dict[str, list[float]] = {"metrics on": [], "metrics off": []}
    p99: dict[str, list[float]] = {"metrics on": [], "metrics off": []}
    try:
        for round_ in range(1, 4):
            for name, url in (("metrics off", without.url), ("metrics on", slice_.service.url)):
                result = await closed_loop(url, paths, concurrency, seconds)
                rate = result["requests"] / result["seconds"]
                ms = [1000 * s for s in result["latencies"]]
                rates[name].append(rate)
                p99[name].append(pct(ms, 99))
                print(
                    f"  round {round_} {name:<12} {rate:8.0f} req/s  p50 {pct(ms, 50):6.1f} ms"
                    f"  p99 {pct(ms, 99):6.1f} ms  errors {result['errors']}"
                )
    finally:
        without.stop()
    on, off = pct(rates["metrics on"], 50), pct(rates["metrics off"], 50)
    print(f"  median req/s: metrics off {off:.0f}, on {on:.0f}: on/off {on / off:.3f} ({100 * (on / off - 1):+.1f}%)")
    print(f"  median p99: off {pct(p99['metrics off'], 50):.1f} ms, on {pct(p99['metrics on'], 50):.1f} ms")


# ---------------------------------------------------------------- 3. freshness of the read models


class StoreWatch:
    """Polls one store for many ids at once and notes, per id, when it first answered 'there'."""

    def __init__(self, name: str, every: float) -> None:
        self.name, self.every = name, every
        self.pending: set[str] = set()
        self.seen: dict[str, float] = {}

    async def present(self, ids: list[str]) -> set[str]:
        raise NotImplementedError

    async def run(self, done: asyncio.Event) -> None:
        while not (done.is_set() and not self.pending):
            if self.pending:
                ids = list(self.pending)
                found = await self.present(ids)
                now = time.time()  # the end of the poll: an upper bound on when it became visible
                for property_id in found:
                    self.seen[property_id] = now
                self.pending -= found
            await asyncio.sleep(self.every)


class PostgresWatch(StoreWatch):
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        super().__init__("postgres", 0.002)
        self.conn = conn

    async def present(self, ids: list[str]) -> set[str]:
        cursor = await self.conn.execute("SELECT id FROM properties WHERE id = ANY(%s) AND title IS NOT NULL", (ids,))
        return {row[0] for row in await cursor.fetchall()}


class RedisWatch(StoreWatch):
    def __init__(self, redis: Redis) -> None:
        super().__init__("redis", 0.002)
        self.redis = redis

    async def present(self, ids: list[str]) -> set[str]:
        values = await self.redis.mget([f"property:{i}" for i in ids])
        return {i for i, value in zip(ids, values, strict=True) if value is not None}


class OpenSearchGetWatch(StoreWatch):
    """GET by id is realtime (served from the translog): visible as soon as it is indexed."""

    def __init__(self, search: httpx.AsyncClient, alias: str) -> None:
        super().__init__("opensearch (GET _doc)", 0.005)
        self.search, self.alias = search, alias

    async def present(self, ids: list[str]) -> set[str]:
        answer = await self.search.post(f"/{self.alias}/_mget", json={"ids": ids}, params={"_source": "false"})
        return {doc["_id"] for doc in answer.json().get("docs", []) if doc.get("found")}


class OpenSearchSearchWatch(StoreWatch):
    """What a search sees: only documents of a refreshed segment."""

    def __init__(self, search: httpx.AsyncClient, alias: str) -> None:
        super().__init__("opensearch (search)", 0.01)
        self.search, self.alias = search, alias

    async def present(self, ids: list[str]) -> set[str]:
        body = {"query": {"ids": {"values": ids}}, "size": len(ids), "_source": False}
        answer = await self.search.post(f"/{self.alias}/_search", json=body)
        return {hit["_id"] for hit in answer.json()["hits"]["hits"]}


async def bench_freshness(slice_: PropertySlice, count: int, seed: int) -> None:
    settings = get_settings()
    owner = "user-bench-fresh"
    headers = {"Authorization": f"Bearer {issue_access_token(owner, 'USER')}"}
    answered: dict[str, float] = {}
    async with (
        await psycopg.AsyncConnection.connect(settings.postgres_dsn, autocommit=True) as conn,
        Redis.from_url(settings.redis_url) as redis,
        httpx.AsyncClient(base_url=settings.opensearch_url, timeout=10) as search,
        slice_.client() as api,
    ):
        alias = settings.opensearch_properties_alias
        watches: list[StoreWatch] = [
            PostgresWatch(conn),
            RedisWatch(redis),
            OpenSearchGetWatch(search, alias),
            OpenSearchSearchWatch(search, alias),
        ]
        done = asyncio.Event()
        pollers = [asyncio.create_task(w.run(done)) for w in watches]
        # One create every 20 ms (50/s), each from the 201: a steady trickle, not a burst.
        for index in range(count):
            paced = time.perf_counter() + 0.02
            answer = await api.post("/api/properties", json=demo_listing(index, seed).body, headers=headers)
            assert answer.status_code == 201, answer.text
            property_id = answer.json()["data"]["id"]
            answered[property_id] = time.time()
            for watch in watches:
                watch.pending.add(property_id)
            await asyncio.sleep(max(0.0, paced - time.perf_counter()))
        done.set()
        await asyncio.wait_for(asyncio.gather(*pollers), timeout=60)
    for watch in watches:
        ms = [1000 * (watch.seen[i] - answered[i]) for i in answered if i in watch.seen]
        target = TARGET_FRESH_MS[watch.name]
        verdict = "ok" if pct(ms, 99) < target else "ABOVE TARGET"
        print(
            f"  {watch.name:<22} p50 {pct(ms, 50):7.1f} ms  p99 {pct(ms, 99):7.1f} ms  max {max(ms):7.1f} ms"
            f"  (target p99 < {target} ms; poll every {1000 * watch.every:.0f} ms)  {verdict}"
        )


# ---------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    seed = random.randrange(1, 2**31)  # fresh listings each run: nothing is an idempotent replay
    print(f"property slice benchmark ({os.cpu_count()} cores: the load generator, the service, both workers,")
    print("Kafka, Postgres, Redis and OpenSearch all share them; figures are for this whole machine)")
    print(f"logs: {LOG_DIR}")
    async with running_property_slice(LOG_DIR, {}) as slice_:
        meter = CpuMeter(stack_pids(slice_))
        async with slice_.client() as client:
            ids = await create_listings(client, args.get_listings, seed, concurrency=8)
        await wait_until_projected(get_settings().postgres_dsn, ids[-1])

        if args.only in (None, "creates"):
            print(
                f"\n1. POST /api/properties, open loop, {args.seconds:g} s per rate (latency from the scheduled send)"
            )
            for rate in args.rates:
                await bench_create_rate(slice_, rate, args.seconds, meter, seed + rate)

        if args.only in (None, "get"):
            print(f"\n2. GET, closed loop, {args.concurrency} concurrent clients, {args.get_seconds:g} s each")
            await bench_get(slice_, ids, args.concurrency, args.get_seconds, meter)

        if args.only in (None, "freshness"):
            print(f"\n3. Freshness: {args.freshness} creates at 50/s, time from the 201 to visible")
            await bench_freshness(slice_, args.freshness, seed + 7)

        if args.only in (None, "metrics-cost"):
            print(
                f"\n4. The cost of metrics: GET, closed loop, {args.concurrency} clients,"
                f" {args.get_seconds:g} s per round"
            )
            await bench_metrics_cost(slice_, ids, args.concurrency, args.get_seconds)
    print("\nstopped the service, the workers and the echo app")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="250,500,1000", help="offered create rates, req/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="per offered rate")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop GET clients")
    parser.add_argument("--get-seconds", type=float, default=10.0)
    parser.add_argument("--get-listings", type=int, default=200, help="listings the GETs pick from")
    parser.add_argument("--freshness", type=int, default=200, help="creates timed to visibility")
    parser.add_argument("--only", choices=["creates", "get", "freshness", "metrics-cost"], help="one part alone")
    parser.add_argument("--load-generator", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.load_generator:
        load_generator(arguments.load_generator)
    else:
        asyncio.run(main(arguments))
