# ruff: noqa: E402  (the project root goes on sys.path before the imports: tests.support is not installed)
"""Benchmark: login req/s with the chosen argon2id parameters (m = 19 MiB, t = 2, p = 1), and
GET /api/users/{id} req/s next to a bare FastAPI echo app (bench/echo_app.py), in the same run.

    .venv/bin/python bench/auth.py [--seconds 10] [--concurrency 16]

Needs the stack up (`make up`, `make prepare`). Starts the user slice itself (workers + user service on
a free port, tests/support/users.running_user_slice) and the echo app under the same uvicorn command
line. Closed loop with aiohttp (httpx's client is slower than the servers it would measure).
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp
import httpx

from tests.support.services import free_port
from tests.support.users import PASSWORD, registration, running_user_slice
from tests.support.waiting import eventually


async def closed_loop(url: str, request: Any, concurrency: int, seconds: float) -> tuple[float, int, float]:
    """(req/s, errors, p50 ms) of `request(session, n)` run by `concurrency` workers for `seconds`."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def worker(n: int) -> None:
            nonlocal errors
            i = 0
            while time.monotonic() < deadline:
                started = time.perf_counter()
                status = await request(session, n * 1_000_000 + i)
                latencies.append(time.perf_counter() - started)
                errors += status >= 400
                i += 1

        begun = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.monotonic() - begun
    latencies.sort()
    return len(latencies) / elapsed, errors, latencies[len(latencies) // 2] * 1000 if latencies else 0.0


async def main(args: argparse.Namespace) -> None:
    env = {key: value for key, value in os.environ.items() if key.startswith("HI_")}
    # One account logged in by every client at once: each attempt counts as a failure until its password
    # checks out, so the account's free failures must exceed the concurrency.
    env.setdefault("HI_LOGIN_ACCOUNT_FREE_FAILURES", "100000")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    async with running_user_slice(log_dir, env) as users, users.client() as client:
        body = registration()
        made = await client.post("/api/auth/register", json=body)
        token = {"X-Consistency-Token": made.headers["X-Consistency-Token"]}
        user_id = made.json()["data"]["id"]
        await eventually(lambda: client.get(f"/api/users/{user_id}", headers=token), lambda r: r.status_code == 200)
        login_body = {"email": body["email"], "password": PASSWORD}

        async def login(session: aiohttp.ClientSession, n: int) -> int:
            headers = {"X-Forwarded-For": f"10.9.{n % 250}.{(n // 250) % 250}"}
            async with session.post("/api/auth/login", json=login_body, headers=headers) as answer:
                await answer.read()
                return answer.status

        async def get_user(session: aiohttp.ClientSession, n: int) -> int:
            async with session.get(f"/api/users/{user_id}") as answer:
                await answer.read()
                return answer.status

        logins = await closed_loop(users.service.url, login, args.concurrency, args.seconds)
        gets = await closed_loop(users.service.url, get_user, args.concurrency, args.seconds)

    port = free_port()
    echo_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "bench.echo_app:app", "--host", "127.0.0.1", "--port", str(port)]
    echo = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:

        async def up() -> int | None:
            try:
                async with httpx.AsyncClient(base_url=echo_url, timeout=2) as probe:
                    return (await probe.get("/echo/ping")).status_code
            except httpx.TransportError:
                return None

        await eventually(up, lambda status: status == 200)

        async def get_echo(session: aiohttp.ClientSession, n: int) -> int:
            async with session.get(f"/echo/{uuid.uuid4().hex[:8]}") as answer:
                await answer.read()
                return answer.status

        echoes = await closed_loop(echo_url, get_echo, args.concurrency, args.seconds)
    finally:
        echo.terminate()
        echo.wait(timeout=15)

    print(f"concurrency {args.concurrency}, {args.seconds:g} s each, one uvicorn worker per service")
    print(
        f"  POST /api/auth/login (argon2id m=19 MiB t=2 p=1): {logins[0]:8.1f} req/s  p50 {logins[2]:6.1f} ms"
        f"  errors {logins[1]}"
    )
    print(
        f"  GET /api/users/{{id}}:                             {gets[0]:8.1f} req/s  p50 {gets[2]:6.1f} ms"
        f"  errors {gets[1]}"
    )
    print(
        f"  GET bare FastAPI echo:                            {echoes[0]:8.1f} req/s  p50 {echoes[2]:6.1f} ms"
        f"  errors {echoes[1]}"
    )
    print(f"  GET user / echo: {gets[0] / echoes[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench/auth.py", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    asyncio.run(main(parser.parse_args()))
