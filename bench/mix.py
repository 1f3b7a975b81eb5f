# ruff: noqa: E402  (the project root goes on sys.path before the imports: ops is imported as a package)
"""Benchmark: a day's traffic mix against the whole running system (`make run`), open loop.

    make run                                   # in one terminal: the whole system on 127.0.0.1
    .venv/bin/python bench/mix.py [--rates 50,100,200,300,400,600] [--seconds 15] [--listings 300] [--only create]

The mix (issue 13): GET a listing by id 30 % · search 18 % (text; a locality; locality + bedrooms;
text + max price; default facets) · suggestions 8 % · POST a view 12 % · featured 5 % · recent 5 % ·
similar 5 % · a signed-in user's recent history 5 % · their inbox 5 % · create a listing (signed in) 5 % ·
filters 2 %. Anonymous unless stated.

Set-up goes through the API as a new user would: it registers and logs in a few users (argon2id, so a
few seconds) and creates the listings (demo bodies from ops/demo_data.py across real localities), then
waits until the last one is readable.

The load comes from a separate process (this file with `--load-generator`, aiohttp on uvloop), open loop: request
i is sent at start + i/rate whatever earlier ones did, and its latency counts from that scheduled time,
so queueing shows. For each offered rate it prints the achieved rate, the share of 2xx, p50/p99 overall
and per route class, and a CPU account: CPU ms per request summed per process, for every process of the
system and only those (`ops.run`'s children and the stores of `HI_STATE_DIR`, with theirs: Kafka,
OpenSearch, Postgres, Redis, each service, each worker; and the load generator, from its first request to
its last answer, its start-up left out; other suites running on the same machine are not counted). It
ends with the highest rate whose p99 < 200 ms with >= 99.9 % 2xx,
and the whole system's idle CPU over 30 s (measured before the load, after a warm-up of 30 s at the first
rate that is not reported, once every group of the system has caught up with what it produced);
`--idle-only` prints just that, per part.

Anonymous views, and each bench user's sign-up and login, are sent with an `X-Forwarded-For` of their own
(100.64.0.0/10 addresses, only ever written into the header), as a proxy in front of the platform would
add; the services believe it only when `HI_TRUSTED_PROXIES` names 127.0.0.1, so run
`HI_TRUSTED_PROXIES=127.0.0.1/32 make run` to measure many people rather than one address (registrations
and views are limited per address).
"""

import argparse
import asyncio
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

THIS_FILE = Path(__file__).resolve()
ROOT = THIS_FILE.parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/mix.py`

import aiohttp
import uvloop
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from config import get_settings
from ops.demo_data import demo_listing
from ops.run import parts
from streams.consumer_lag import lag, positions

PORTS = {"user": 8081, "property": 8082, "search": 8083, "user-history": 8084, "notification": 8085, "file": 8086}
MIX: dict[str, int] = {
    "get": 30,
    "search": 18,
    "suggestions": 8,
    "view": 12,
    "featured": 5,
    "recent": 5,
    "similar": 5,
    "history": 5,
    "inbox": 5,
    "create": 5,
    "filters": 2,
}
P99_BAR_MS = 200.0
OK_BAR = 0.999
SEARCHES = (
    {"q": "gachibowli"},
    {"location": "Kondapur"},
    {"location": "Madhapur", "bedrooms": "3"},
    {"q": "apartment", "maxPrice": "15000000"},
)
SUGGESTIONS = ("gach", "kon", "mad", "ban", "kuk", "hit", "jub", "kok")
PASSWORD = "bench-mix-passphrase-2026"


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ---------------------------------------------------------------- the load generator (its own process)


def _request(kind: str, rng: random.Random, world: dict[str, Any], index: int) -> tuple[str, str, dict[str, Any]]:
    """(method, url, aiohttp keyword arguments) of one request of the mix."""
    host, listings, users = world["host"], world["listings"], world["users"]
    prop, search = f"http://{host}:{PORTS['property']}", f"http://{host}:{PORTS['search']}"
    listing = rng.choice(listings)
    if kind == "get":
        return "GET", f"{prop}/api/properties/{listing}", {}
    if kind == "search":
        return "GET", f"{search}/api/search/properties", {"params": rng.choice(SEARCHES)}
    if kind == "suggestions":
        return "GET", f"{search}/api/search/suggestions", {"params": {"q": rng.choice(SUGGESTIONS)}}
    if kind == "view":
        viewer = f"100.64.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        return "POST", f"{prop}/api/properties/{listing}/view", {"headers": {"X-Forwarded-For": viewer}}
    if kind == "featured":
        return "GET", f"{prop}/api/properties/featured", {}
    if kind == "recent":
        return "GET", f"{prop}/api/properties/recent", {}
    if kind == "similar":
        return "GET", f"{prop}/api/properties/similar/{listing}", {}
    if kind == "filters":
        return "GET", f"{search}/api/search/filters", {}
    user = rng.choice(users)
    signed_in = {"Authorization": f"Bearer {user['token']}"}
    if kind == "history":
        url = f"http://{host}:{PORTS['user-history']}/api/user-history/{user['id']}/recent"
        return "GET", url, {"headers": signed_in}
    if kind == "inbox":
        return "GET", f"http://{host}:{PORTS['notification']}/api/notifications/{user['id']}", {"headers": signed_in}
    if kind == "create":
        body = demo_listing(100_000 + index, world["seed"]).body
        return "POST", f"{prop}/api/properties", {"headers": signed_in, "json": body}
    raise ValueError(kind)


async def _open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    rate, total = spec["rate"], int(spec["rate"] * spec["seconds"])
    rng = random.Random(f"mix:{spec['seed']}:{rate}")
    # `--only KIND`: that route class alone, for its own CPU account (what one create costs every process).
    only = spec.get("only")
    kinds = [only] * total if only else rng.choices(list(MIX), weights=list(MIX.values()), k=total)
    plan = [(kind, *_request(kind, rng, spec["world"], spec["offset"] + i)) for i, kind in enumerate(kinds)]
    records: list[tuple[str, float, int | str]] = []  # (kind, latency from the scheduled time, status)
    connector = aiohttp.TCPConnector(limit=spec["connections"], limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=spec["timeout"])
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def one(kind: str, method: str, url: str, options: dict[str, Any], due: float) -> None:
            status: int | str
            try:
                async with client.request(method, url, **options) as answer:
                    await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            records.append((kind, time.perf_counter() - due, status))

        tasks = []
        # Its own CPU from the first request to the last answer: its start-up (imports, the plan) is not
        # what a request costs.
        cpu_before = _own_cpu()
        start = time.perf_counter()
        for i, (kind, method, url, options) in enumerate(plan):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(kind, method, url, options, due)))
        sent_in = time.perf_counter() - start
        await asyncio.gather(*tasks)
        seconds, cpu_seconds = time.perf_counter() - start, _own_cpu() - cpu_before
    return {"records": records, "sent_seconds": sent_in, "seconds": seconds, "cpu_seconds": cpu_seconds}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_generator() -> None:
    spec = json.loads(sys.stdin.read())
    # uvloop, as the services run: the generator's own CPU is part of the account, and what a cheaper loop
    # saves is left to the system being measured.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(json.dumps(runner.run(_open_loop(spec))))


# ---------------------------------------------------------------- CPU account from /proc


def _part_of(cmdline: list[str]) -> str | None:
    """Which part of the system a process is, from its command line (None: not ours)."""
    line = " ".join(cmdline)
    if "kafka.Kafka" in line:
        return "kafka"
    if "OpenSearchRunner" in line or "org.opensearch" in line:
        return "opensearch"
    if cmdline and (cmdline[0].endswith("postgres") or cmdline[0].startswith("postgres:")):
        return "postgres"
    if cmdline and "redis-server" in cmdline[0]:
        return "redis"
    if "--load-generator" in line:
        return "load-generator"
    service = re.search(r"api\.(\w+)\.main:app", line)
    if service:
        return "svc:" + service.group(1).replace("_", "-")
    module = re.search(r"-m (streams\.[\w.]+|ops\.mailbox|ops\.sms_sink)", line)
    if module:
        return "worker:" + module.group(1).removeprefix("streams.")
    return None


def _processes() -> dict[int, tuple[int, list[str]]]:
    """Every process: pid -> (parent pid, command line)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        found[int(entry)] = (parent, [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg])
    return found


def system_pids() -> set[int]:
    """The processes of the system under test: `ops.run` and the stores of its state dir (`HI_STATE_DIR`,
    or Redis by its port), with all their children. Other suites' workers and stacks on the same machine
    (same command lines, other state dirs) are not counted."""
    settings = get_settings()
    marks = (str(settings.state_dir), f"127.0.0.1:{settings.redis_port}")
    processes = _processes()
    roots = {
        pid
        for pid, (_, cmdline) in processes.items()
        if "ops.run" in cmdline or (_part_of(cmdline) and any(mark in " ".join(cmdline) for mark in marks))
    }
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    ours, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        ours.add(pid)
        todo += children.get(pid, [])
    return ours


def cpu_by_part() -> dict[str, float]:
    """CPU seconds so far per part of this system: utime + stime (+ reaped children's, so Postgres
    backends count)."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for pid in system_pids():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            part = _part_of([arg.decode(errors="replace") for arg in raw.split(b"\0") if arg])
            if part is None:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        totals[part] = totals.get(part, 0.0) + sum(int(f) for f in fields[11:15]) / ticks
    return totals


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {part: after[part] - before.get(part, 0.0) for part in after if after[part] - before.get(part, 0.0) > 0}


# ---------------------------------------------------------------- set-up through the API


async def _ready(client: aiohttp.ClientSession, host: str) -> None:
    for name, port in PORTS.items():
        async with client.get(f"http://{host}:{port}/ready") as answer:
            if answer.status != 200:
                raise SystemExit(f"{name} service on :{port} is not ready ({answer.status}): start `make run` first")


async def _user(client: aiohttp.ClientSession, host: str, run: str, n: int) -> dict[str, str]:
    base = f"http://{host}:{PORTS['user']}/api/auth"
    email = f"bench-mix-{run}-{n}@example.in"
    body = {"email": email, "password": PASSWORD, "name": f"Bench Viewer {n}", "phone": f"+9198{n:08d}"}
    # Each person signs up from an address of their own (registrations are limited per address).
    address = {"X-Forwarded-For": f"100.65.{n // 250}.{n % 250 + 1}"}
    async with client.post(f"{base}/register", json=body, headers=address) as answer:
        if answer.status != 201:
            raise SystemExit(f"register answered {answer.status}: {await answer.text()}")
        token = answer.headers.get("X-Consistency-Token", "")
    for _ in range(200):  # login waits for its own registration once the session rule holds; until then, retry
        async with client.post(
            f"{base}/login",
            json={"email": email, "password": PASSWORD},
            headers={**address, "X-Consistency-Token": token},
        ) as answer:
            if answer.status == 200:
                data = (await answer.json())["data"]
                return {"id": data["userId"], "token": data["accessToken"]}
        await asyncio.sleep(0.05)
    raise SystemExit("a registered bench user could not log in")


async def _listings(client: aiohttp.ClientSession, host: str, users: list[dict[str, str]], count: int, seed: int):
    url = f"http://{host}:{PORTS['property']}/api/properties"
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> tuple[str, str]:
        user = users[i % len(users)]
        async with (
            gate,
            client.post(
                url, json=demo_listing(i, seed).body, headers={"Authorization": f"Bearer {user['token']}"}
            ) as answer,
        ):
            if answer.status != 201:
                raise SystemExit(f"create answered {answer.status}: {await answer.text()}")
            return (await answer.json())["data"]["id"], answer.headers["X-Consistency-Token"]

    made = await asyncio.gather(*(one(i) for i in range(count)))
    last_id, last_token = made[-1]
    # Read back with its token; on a system that has just started, the projection may still be joining its
    # group when the token's wait runs out, so ask again for a while before giving up.
    deadline = time.perf_counter() + 120
    while True:
        async with client.get(f"{url}/{last_id}", headers={"X-Consistency-Token": last_token}) as answer:
            if answer.status == 200:
                break
            if time.perf_counter() > deadline:
                raise SystemExit(f"the last listing is not readable ({answer.status})")
        await asyncio.sleep(1)
    return [property_id for property_id, _ in made]


@dataclass
class Step:
    rate: int
    achieved: float
    ok: float
    p50: float
    p99: float
    by_kind: dict[str, tuple[int, float, float, float]]  # count, 2xx share, p50, p99
    cpu_ms_per_request: dict[str, float]
    statuses: dict[str, int]


def _step(rate: int, result: dict[str, Any], cpu: dict[str, float]) -> Step:
    records = result["records"]
    ok = [r for r in records if isinstance(r[2], int) and 200 <= r[2] < 300]
    latencies = [1000 * r[1] for r in records]
    by_kind = {}
    for kind in MIX:
        mine = [r for r in records if r[0] == kind]
        if mine:
            good = sum(1 for r in mine if isinstance(r[2], int) and 200 <= r[2] < 300)
            ms = [1000 * r[1] for r in mine]
            by_kind[kind] = (len(mine), good / len(mine), pct(ms, 50), pct(ms, 99))
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
    n = max(len(records), 1)
    return Step(
        rate=rate,
        achieved=len(records) / result["seconds"],
        ok=len(ok) / n,
        p50=pct(latencies, 50),
        p99=pct(latencies, 99),
        by_kind=by_kind,
        cpu_ms_per_request={part: 1000 * seconds / n for part, seconds in cpu.items()},
        statuses=statuses,
    )


def _print_step(step: Step) -> None:
    codes = ", ".join(f"{code}: {count}" for code, count in sorted(step.statuses.items()))
    print(
        f"\n== offered {step.rate} req/s: achieved {step.achieved:.1f} req/s, 2xx {100 * step.ok:.2f} %, "
        f"p50 {step.p50:.1f} ms, p99 {step.p99:.1f} ms  ({codes})"
    )
    print(f"   {'route class':<12} {'n':>6} {'2xx %':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for kind, (count, good, p50, p99) in step.by_kind.items():
        print(f"   {kind:<12} {count:>6} {100 * good:>7.2f} {p50:>8.1f} {p99:>8.1f}")
    total = sum(step.cpu_ms_per_request.values())
    print(f"   CPU ms per request: {total:.2f} in all")
    for part, ms in sorted(step.cpu_ms_per_request.items(), key=lambda item: -item[1]):
        print(f"     {part:<40} {ms:6.2f}")


def _groups(host: str) -> list[str]:
    """The consumer groups of the running system: those ops.run's workers are probed by."""
    return sorted({g for part in parts(host) if part.probe[:1] == ("group",) for g in part.probe[1:]})


async def _settle(host: str, bootstrap: str, limit: float = 180) -> float:
    """Wait until every group of the system has committed up to its topics' ends (what the set-up or a
    load step produced is processed), so the idle figure is the system at rest, not a backlog draining.
    Answers the seconds it took."""
    groups, started = _groups(host), time.perf_counter()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    ends = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await admin.start()
    await ends.start()
    try:
        while time.perf_counter() - started < limit:
            behind = 0
            for group in groups:
                behind += sum(lag(at, end) for at, end in (await positions(admin, ends, group)).values())
            if behind == 0:
                break
            await asyncio.sleep(1)
        else:
            print(f"   (groups still behind after {limit:.0f} s: idle includes their catching up)")
    finally:
        await ends.stop()
        await admin.close()
    return time.perf_counter() - started


def _idle(seconds: float) -> dict[str, float]:
    before, started = cpu_by_part(), time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - started
    return {part: 100 * used / elapsed for part, used in cpu_delta(before, cpu_by_part()).items()}


async def _setup(args: argparse.Namespace) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as client:
        await _ready(client, args.host)
        started = time.perf_counter()
        users = list(await asyncio.gather(*(_user(client, args.host, run, n) for n in range(args.users))))
        listings = await _listings(client, args.host, users, args.listings, args.seed)
    print(f"set-up: {len(users)} users, {len(listings)} listings in {time.perf_counter() - started:.1f} s")
    return {"host": args.host, "users": users, "listings": listings, "seed": args.seed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rates", default="50,100,200,300,400,600")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--listings", type=int, default=300)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--warmup-seconds", type=float, default=30, help="at the first rate, not reported")
    parser.add_argument("--connections", type=int, default=512, help="the generator's connection pool")
    parser.add_argument("--timeout", type=float, default=10, help="a request with no answer by then failed")
    parser.add_argument("--idle-only", action="store_true", help="only the idle CPU of each part, then stop")
    parser.add_argument("--only", choices=list(MIX), help="send this route class alone (its CPU account per request)")
    parser.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_generator:
        load_generator()
        return
    if args.idle_only:
        asyncio.run(_settle(args.host, get_settings().kafka_bootstrap))
        idle = _idle(args.idle_seconds)
        for part, share in sorted(idle.items(), key=lambda item: -item[1]):
            print(f"   {part:<40} {share:6.2f} % of a core")
        print(f"   whole system idle over {args.idle_seconds:.0f} s: {sum(idle.values()):.1f} % of a core")
        return
    world = asyncio.run(_setup(args))
    bootstrap = get_settings().kafka_bootstrap
    print(f"settled in {asyncio.run(_settle(args.host, bootstrap)):.1f} s")
    idle = {} if args.warmup_seconds > 0 else _idle(args.idle_seconds)
    steps = []
    offset = 0
    # A warm-up first, not reported: right after a start the JVMs (OpenSearch, Kafka) are still
    # compiling their hot paths, and the first step's CPU account read two to three times the next one's.
    rates = [int(r) for r in args.rates.split(",")]
    if args.warmup_seconds > 0:
        rates = [-rates[0], *rates]
    for rate in rates:
        warming = rate < 0
        rate = abs(rate)
        seconds = args.warmup_seconds if warming else args.seconds
        spec = {
            "rate": rate,
            "seconds": seconds,
            "seed": args.seed,
            "world": world,
            "offset": offset,
            "connections": args.connections,
            "timeout": args.timeout,
            "only": args.only,
        }
        offset += int(rate * seconds)
        before = cpu_by_part()
        generator = subprocess.run(
            [sys.executable, str(THIS_FILE), "--load-generator"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=True,
        )
        cpu = cpu_delta(before, cpu_by_part())
        result = json.loads(generator.stdout)
        cpu["load-generator"] = result["cpu_seconds"]
        if warming:
            # The system at rest once warm: after the warm-up's events are processed.
            settled = asyncio.run(_settle(args.host, bootstrap))
            print(f"warm-up: {seconds:.0f} s at {rate} req/s; settled in {settled:.1f} s")
            idle = _idle(args.idle_seconds)
            continue
        step = _step(rate, result, cpu)
        steps.append(step)
        _print_step(step)
    passing = [s.rate for s in steps if s.p99 < P99_BAR_MS and s.ok >= OK_BAR]
    print("\n== summary")
    print(f"   {'offered':>8} {'achieved':>9} {'2xx %':>7} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}")
    for s in steps:
        cpu_total = sum(s.cpu_ms_per_request.values())
        print(f"   {s.rate:>8} {s.achieved:>9.1f} {100 * s.ok:>7.2f} {s.p50:>8.1f} {s.p99:>8.1f} {cpu_total:>11.2f}")
    print(f"   highest rate with p99 < {P99_BAR_MS:.0f} ms and >= {100 * OK_BAR:.1f} % 2xx: {max(passing, default=0)}")
    top = ", ".join(f"{part} {share:.1f}" for part, share in sorted(idle.items(), key=lambda item: -item[1])[:8])
    print(f"   whole system idle over {args.idle_seconds:.0f} s: {sum(idle.values()):.1f} % of a core ({top})")


if __name__ == "__main__":
    main()
