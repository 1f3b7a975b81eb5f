"""What `make run` promises, checked on the real thing: the runner starts the archive worker and the six
services; every `/ready` answers 200; the broker holds exactly the catalogue's topics; Kafka's own
consumer-groups tool lists the archive's group; every part serves its metrics; SIGTERM stops every process it
started and frees every port."""

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.common.auth import issue_access_token
from api.services import SERVICES
from config.settings import PROJECT_ROOT
from ops.healthcheck import group_is_stable
from ops.run import parts
from schemas.topics import ALL_TOPICS
from tests.support.junk_requests import JunkRequests
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def system():
    runner = subprocess.Popen(
        [sys.executable, "-m", "ops.run"], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    yield runner
    if runner.poll() is None:  # the SIGTERM test did not run (deselected, or failed before): stop it so
        runner.terminate()  # that it stops its children; a SIGKILL would leave them running
        try:
            runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait(timeout=30)


async def test_every_service_is_ready(system):
    async with httpx.AsyncClient(timeout=5) as client:

        async def statuses():
            answers = {}
            for spec in SERVICES:
                try:
                    answers[spec.name] = (await client.get(f"http://127.0.0.1:{spec.port}/ready")).status_code
                except httpx.TransportError:
                    answers[spec.name] = None
            return answers

        answers = await eventually(statuses, until=lambda a: set(a.values()) == {200}, within=90, every=1)
    assert answers == {spec.name: 200 for spec in SERVICES}
    assert system.poll() is None, "the runner is still supervising"


def test_the_broker_holds_exactly_the_catalogue_topics(system, settings):
    listing = subprocess.run(["kcat", "-b", settings.kafka_bootstrap, "-L"], capture_output=True, text=True, check=True)
    topics = {
        line.split('"')[1]
        for line in listing.stdout.splitlines()
        if line.strip().startswith("topic ") and not line.split('"')[1].startswith("__")
    }
    assert topics == {topic.name for topic in ALL_TOPICS}


async def test_kafka_consumer_groups_tool_lists_the_archive_group(system, settings):
    def groups():
        out = subprocess.run(
            [str(PROJECT_ROOT / "ops" / "kafka-cli"), "consumer-groups", "--list"],
            capture_output=True,
            text=True,
            check=True,
        )
        return set(out.stdout.split())

    async def probe():
        return groups()

    found = await eventually(probe, until=lambda g: settings.archive_group in g, within=60, every=1)
    assert settings.archive_group in found


async def dependency_down(client: httpx.AsyncClient, base: str, answer: httpx.Response) -> bool:
    """A 503 is honest only while the service's own /ready says a dependency is down."""
    return answer.status_code == 503 and (await client.get(f"{base}/ready")).status_code != 200


async def test_junk_sent_to_every_operation_never_gets_a_server_error(system, settings):
    """Ten junk requests per operation of every service (from its own OpenAPI), as nobody, a user, an
    admin and a forged token: each answer is a client error or a success in the one envelope, never a
    5xx and never a stack trace. A 503 passes only while the service's /ready says a dependency is
    down; every worker has joined its group first (what docker-compose's healthchecks wait for), so a
    command is decided within its wait."""
    for part in parts("127.0.0.1"):
        if part.probe[0] == "group":
            for group in part.probe[1:]:  # the projection host's every group
                await eventually(lambda group=group: group_is_stable(settings.kafka_bootstrap, group), bool, within=120)
    tokens = [
        {},
        {"Authorization": f"Bearer {issue_access_token('user-' + 'f' * 32, 'USER')}"},
        {"Authorization": f"Bearer {issue_access_token('user-' + 'a' * 32, 'ADMIN')}"},
        {"Authorization": "Bearer forged.token.here"},
    ]
    broken, sent = [], 0
    async with httpx.AsyncClient(timeout=30) as client:
        for n, spec in enumerate(SERVICES):
            base = f"http://127.0.0.1:{spec.port}"
            document = (await client.get(f"{base}/openapi.json")).json()
            for junk in JunkRequests(document, seed=n).each_operation(times=10):
                headers = {**tokens[sent % len(tokens)], **junk.headers}
                if junk.json_body is not None:
                    headers["Content-Type"] = "application/json"
                answer = await client.request(
                    junk.method,
                    base + junk.path,
                    params=junk.params,
                    headers=headers,
                    content=junk.json_body,
                    files={"file": ("x.png", junk.file, "image/png")} if junk.file is not None else None,
                )
                sent += 1
                body = answer.text
                down = await dependency_down(client, base, answer)
                if (answer.status_code >= 500 and not down) or "Traceback" in body:
                    broken.append((junk.method, junk.path[:80], junk.params, answer.status_code, body[:300]))
    assert sent > 400
    assert broken == []


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def service_pids(runner: subprocess.Popen[bytes]) -> dict[str, int]:
    running = children_of(runner.pid)
    return {spec.name: next(pid for pid, command in running.items() if spec.app in command) for spec in SERVICES}


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


async def test_hostile_bodies_to_every_operation_get_no_server_error_and_grow_no_process(system, settings):
    """Bodies past the cap (with a length, and streamed without one), JSON nested 5,000 deep and 990 deep
    around a NUL, and bodies under odd content types, to every operation of every service, as each kind of
    caller: never a 5xx (a 503 only while a dependency is down), and no service process grows by more
    than the body cap (RSS from /proc, measured after a first round, which loads what the requests touch,
    and after a second)."""
    cap = settings.max_json_body_bytes
    tokens = [
        {},
        {"Authorization": f"Bearer {issue_access_token('user-' + 'f' * 32, 'USER')}"},
        {"Authorization": f"Bearer {issue_access_token('user-' + 'a' * 32, 'ADMIN')}"},
    ]
    pids = service_pids(system)
    broken: list[tuple] = []
    sent = 0
    async with httpx.AsyncClient(timeout=60) as client:
        documents = {
            spec.name: (await client.get(f"http://127.0.0.1:{spec.port}/openapi.json")).json() for spec in SERVICES
        }

        async def one_round() -> None:
            nonlocal sent
            for n, spec in enumerate(SERVICES):
                for junk in JunkRequests(documents[spec.name], seed=100 + n).hostile_bodies(cap):
                    assert junk.body is not None
                    headers = {**tokens[sent % len(tokens)], **junk.headers}
                    if junk.content_type:
                        headers["Content-Type"] = junk.content_type
                    sent += 1
                    try:
                        answer = await client.request(
                            junk.method,
                            f"http://127.0.0.1:{spec.port}{junk.path}",
                            params=junk.params,
                            headers=headers,
                            content=chunks(junk.body) if junk.chunked else junk.body,
                        )
                    except httpx.TransportError as exc:  # the answer must arrive, not a dropped connection
                        broken.append((spec.name, junk.method, junk.path[:80], repr(exc)))
                        continue
                    down = await dependency_down(client, f"http://127.0.0.1:{spec.port}", answer)
                    if (answer.status_code >= 500 and not down) or "Traceback" in answer.text:
                        broken.append((spec.name, junk.method, junk.path[:80], answer.status_code, answer.text[:300]))

        await one_round()
        before = {name: rss_bytes(pid) for name, pid in pids.items()}
        await one_round()
        grown = {name: rss_bytes(pid) - before[name] for name, pid in pids.items()}
    assert sent > 400
    assert broken == []
    assert {name: growth for name, growth in grown.items() if growth > cap} == {}, grown


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def children_of(pid: int) -> dict[int, str]:
    """{pid: command line} of the processes whose parent is `pid` (from /proc)."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name in parentheses may hold spaces: the parent pid is the 2nd field after it.
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def test_every_part_serves_its_metrics_where_the_runner_says(system):
    """Each service at /metrics with its read models' staleness, each stream worker on its own port with its
    group's lag (`ops/prometheus/prometheus.yml` scrapes the same addresses)."""
    expected = {
        url: "hi_consumer_lag{" if part.metrics_port else "hi_read_model_lag{"
        for part in parts("127.0.0.1")
        if (url := part.metrics_url("127.0.0.1"))
    }
    async with httpx.AsyncClient(timeout=10) as client:

        async def missing() -> list[str]:
            lacking = []
            for url, series in expected.items():
                try:
                    answer = await client.get(url)
                except httpx.TransportError:
                    lacking.append(url)
                    continue
                if answer.status_code != 200 or series not in answer.text:
                    lacking.append(url)
            return lacking

        await eventually(missing, lambda lacking: lacking == [], within=120, every=1)


async def test_sigterm_stops_every_part_and_the_runner_printed_where_they_were(system):
    """Last in this module: it ends the system the fixture started, every process of it."""
    started = children_of(system.pid)
    assert len(started) == len(parts("127.0.0.1")), started
    system.terminate()
    assert await asyncio.to_thread(system.wait, 60) == 0
    assert {pid: command for pid, command in started.items() if alive(pid)} == {}
    assert [spec.port for spec in SERVICES if port_taken(spec.port)] == []
    printed = system.stdout.read().decode()
    for spec in SERVICES:
        assert f"http://127.0.0.1:{spec.port}/docs" in printed
    for part in parts("127.0.0.1"):
        if part.metrics_port:
            assert f"http://127.0.0.1:{part.metrics_port}/metrics" in printed
