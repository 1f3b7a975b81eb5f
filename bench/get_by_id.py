# ruff: noqa: E402  (the project root goes on sys.path before the imports: bench is not installed)
"""Benchmark: GET /api/properties/{id} next to a bare FastAPI echo (bench/echo_app.py) under the same
uvicorn command line, alternated round by round, optionally with the property service of another
checkout (`--before DIR`, e.g. a `git worktree` of the commit to compare with) in the same rounds.

    .venv/bin/python bench/get_by_id.py [--before DIR] [--rounds 3] [--seconds 8] [--concurrency 32] [--route]

Reads listings that are already projected (up to 200 `property:*` documents in Redis), so it starts
no worker and joins no consumer group; needs the stack up. Anonymous GETs, as most are: the property
service answers them in its fast lane (api/common/fast_reads.py); `--route` adds a query string, which
sends them past it to the route and its full rules, as a signed-in or token-carrying read goes. The load comes
from bench/properties.py's closed-loop generator in its own process (aiohttp). For each round and
server: req/s, p50/p99, and the server's CPU ms per request (/proc/<pid>/stat), which is what
decides its rate on a shared machine; the ratios to the echo are of the medians over the rounds.
Not part of `make test`; prints numbers, never asserts.
"""

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
from redis.asyncio import Redis

from api.common.deps import PROPERTY_ID_PATTERN
from api.services import ServiceSpec, by_name
from bench.properties import closed_loop, pct
from config import get_settings
from tests.support.processes import stop_process_group
from tests.support.services import free_port
from tests.support.waiting import eventually

LOG_DIR = ROOT / ".state" / "logs" / "bench-get-by-id"
TICKS = os.sysconf("SC_CLK_TCK")


class Server:
    """One uvicorn process of `spec`, started from the checkout `root`."""

    def __init__(self, name: str, spec: ServiceSpec, root: Path, probe: str) -> None:
        self.name, self.spec, self.root, self.probe = name, spec, root, probe
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with (LOG_DIR / f"{self.name.replace(' ', '-')}.log").open("ab") as log:
            command = [sys.executable, *self.spec.command(port=self.port)[1:]]
            self.process = subprocess.Popen(  # noqa: ASYNC220 (started once, before any measuring)
                command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

        async def status() -> int | None:
            try:
                async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
                    return (await client.get(self.probe)).status_code
            except httpx.TransportError:
                return None

        await eventually(status, lambda s: s == 200, within=60)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def stop(self) -> None:
        stop_process_group(self.process, grace_seconds=15)


async def listing_ids(limit: int) -> list[str]:
    """Live listings with ids the API takes (tests also write keys like `property:prop-x-y` straight to Redis)."""
    async with Redis.from_url(get_settings().redis_url) as redis:
        found = []
        async for key in redis.scan_iter(match="property:prop-*", count=500, _type="string"):
            value = await redis.get(key)
            property_id = key.decode().removeprefix("property:")
            if value and b'"deleted":true' not in value and re.fullmatch(PROPERTY_ID_PATTERN, property_id):
                found.append(property_id)
            if len(found) >= limit:
                break
    return found


async def main(args: argparse.Namespace) -> None:
    ids = await listing_ids(200)
    # A query string takes the request past the fast lane (api/common/fast_reads.py) to the route: what a
    # signed-in or token-carrying read costs, less its token check.
    via = "?via=route" if args.route else ""
    if not ids:
        raise SystemExit("no projected listings in Redis: create some first (make demo, or any test run)")
    servers = [Server("property (this checkout)", by_name("property"), ROOT, "/health")]
    if args.before:
        servers.insert(0, Server("property (before)", by_name("property"), args.before, "/health"))
    servers.append(Server("bare FastAPI echo", ServiceSpec("echo", "bench.echo_app:app", 0), ROOT, "/echo/ping"))
    print(
        f"GET by id{via} vs echo: {len(ids)} listings, {args.concurrency} clients,"
        f" {args.seconds:g} s per server a round"
    )
    rates: dict[str, list[float]] = {s.name: [] for s in servers}
    cpu_ms: dict[str, list[float]] = {s.name: [] for s in servers}
    try:
        for server in servers:
            await server.start()
        for round_ in range(1, args.rounds + 1):
            for server in servers:
                echo = "echo" in server.name
                paths = [f"/echo/{i}" for i in ids] if echo else [f"/api/properties/{i}{via}" for i in ids]
                before = server.cpu_seconds()
                result = await closed_loop(server.url, paths, args.concurrency, args.seconds)
                used = server.cpu_seconds() - before
                rate = result["requests"] / result["seconds"]
                rates[server.name].append(rate)
                cpu_ms[server.name].append(1000 * used / max(1, result["requests"]))
                ms = [1000 * s for s in result["latencies"]]
                print(
                    f"  round {round_} {server.name:<26} {rate:7.0f} req/s  p50 {pct(ms, 50):6.1f} ms"
                    f"  p99 {pct(ms, 99):6.1f} ms  cpu {cpu_ms[server.name][-1]:.3f} ms/request"
                    f"  errors {result['errors']}",
                    flush=True,
                )
    finally:
        for server in servers:
            server.stop()
    echo = servers[-1].name
    for server in servers[:-1]:
        rate_ratio = statistics.median(rates[server.name]) / statistics.median(rates[echo])
        cpu_ratio = statistics.median(cpu_ms[echo]) / statistics.median(cpu_ms[server.name])
        print(
            f"  {server.name:<26} vs echo: req/s ratio {rate_ratio:.2f}, CPU per request (echo/it) {cpu_ratio:.2f}"
            f"  (median {statistics.median(cpu_ms[server.name]):.3f} ms vs {statistics.median(cpu_ms[echo]):.3f} ms)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="another checkout whose property service runs in the same rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--route", action="store_true", help="past the fast lane: the route and its full rules answer")
    arguments = parser.parse_args()
    arguments.before = Path(arguments.before).resolve() if arguments.before else None
    asyncio.run(main(arguments))
