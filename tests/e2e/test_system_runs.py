"""What `make run` promises, checked on the real thing: the runner starts the archive worker and the six
services; every `/ready` answers 200; the broker holds exactly the catalogue's topics; Kafka's own
consumer-groups tool lists the archive's group; SIGTERM stops every process it started and frees every
port."""

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.services import SERVICES
from config.settings import PROJECT_ROOT
from ops.run import parts
from schemas.topics import ALL_TOPICS
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def system():
    runner = subprocess.Popen(
        [sys.executable, "-m", "ops.run"], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    yield runner
    if runner.poll() is None:
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


def test_the_broker_holds_exactly_the_catalogue_topics(system):
    listing = subprocess.run(["kcat", "-b", "127.0.0.1:9092", "-L"], capture_output=True, text=True, check=True)
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
