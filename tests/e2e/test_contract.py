"""The published contract, fuzzed: schemathesis (its CLI, `st run`) against each service's own
`/openapi.json`, signed in as a real user (registered and logged in through the user service), with the
stream workers the service's commands and queries need running. Every answer must be one the spec
names: not a 5xx, a documented status, its documented media type, headers and body schema.

Bounded: a fixed seed and a few examples per operation. On failure the run's own report (each failing
case with its curl line) is the assertion's message.
"""

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from api.services import by_name
from config import get_settings
from tests.support.files import running_file_slice
from tests.support.history import running_history_slice
from tests.support.notifications import running_notification_slice
from tests.support.services import ServiceProcess
from tests.support.stack import StackEndpoints
from tests.support.users import UserSlice, registration, running_user_slice

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
SEED = 20261202
EXAMPLES_PER_OPERATION = 5
# The coverage phase is not bounded by the examples per operation: it tries every boundary and wrong type of
# every parameter (500 to 1000 cases a service, 35 to 80 s each here). It passes too; run it with
# HI_CONTRACT_PHASES=examples,coverage,fuzzing,stateful when the contract changes much.
PHASES = os.environ.get("HI_CONTRACT_PHASES", "examples,fuzzing,stateful")
RUN_TIMEOUT_SECONDS = 240


@dataclass(frozen=True)
class Fuzzed:
    """A service under test: how to have it running, and the operations that must run on their own.

    `alone`: operations that end the session the run signs in with (logout revokes its token): each runs
    last, in a run of its own, with a token of its own, so the other operations keep theirs."""

    name: str
    running: Callable[[StackEndpoints, Path, UserSlice], AbstractAsyncContextManager[str]]
    alone: tuple[str, ...] = field(default=())


@asynccontextmanager
async def _user(stack: StackEndpoints, logs: Path, users: UserSlice) -> AsyncIterator[str]:
    yield users.service.url


@asynccontextmanager
async def _property(stack: StackEndpoints, logs: Path, users: UserSlice) -> AsyncIterator[str]:
    # The user slice runs the property slice beside it: its decider and projections answer the commands.
    yield users.properties.service.url


@asynccontextmanager
async def _search(stack: StackEndpoints, logs: Path, users: UserSlice) -> AsyncIterator[str]:
    # Listings are found in the index the user slice's property search projection keeps.
    service = ServiceProcess(by_name("search"), logs / "search-service.log", stack.as_env())
    try:
        await service.start()
        yield service.url
    finally:
        service.stop()


@asynccontextmanager
async def _user_history(stack: StackEndpoints, logs: Path, users: UserSlice) -> AsyncIterator[str]:
    async with running_history_slice(logs, stack.as_env(), get_settings()) as running:
        yield running.service.url


@asynccontextmanager
async def _notification(stack: StackEndpoints, logs: Path, users: UserSlice) -> AsyncIterator[str]:
    # Recipients are looked up in the users read model, which the user slice's projection keeps.
    async with running_notification_slice(logs, stack.as_env(), with_users=False) as running:
        yield running.service.url


@asynccontextmanager
async def _file(stack: StackEndpoints, logs: Path, users: UserSlice) -> AsyncIterator[str]:
    # Listings are looked up in the property read model, which the user slice's property projection keeps.
    bootstrap = stack.kafka_bootstrap
    async with running_file_slice(logs, stack.as_env(), bootstrap, f"contract-{uuid.uuid4().hex[:8]}") as running:
        yield running.service.url


FUZZED = (
    Fuzzed("user", _user, alone=("/api/auth/logout",)),
    Fuzzed("property", _property),
    Fuzzed("search", _search),
    Fuzzed("user-history", _user_history),
    Fuzzed("notification", _notification),
    Fuzzed("file", _file),
)


@pytest.fixture(scope="module")
async def users(stack, tmp_path_factory) -> AsyncIterator[UserSlice]:
    async with running_user_slice(tmp_path_factory.mktemp("contract-users"), stack.as_env()) as slice_:
        yield slice_


async def signed_in(users: UserSlice) -> str:
    """A fresh user, registered and logged in through the user service: its access token."""
    body = registration()
    async with users.client() as client:
        registered = await client.post("/api/auth/register", json=body)
        assert registered.status_code == 201, registered.text
        login = await client.post("/api/auth/login", json={"email": body["email"], "password": body["password"]})
        assert login.status_code == 200, login.text
    return str(login.json()["data"]["accessToken"])


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str


async def fuzz(url: str, token: str, report: Path, *filters: str) -> Run:
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        # One worker: with two, Hypothesis's threads trip CPython 3.11's AST recursion check
        # ("AST constructor recursion depth mismatch") while describing strategies.
        "--workers",
        "1",
        "--phases",
        PHASES,
        "--no-shrink",
        "--request-timeout",
        "30",
        "-H",
        f"Authorization: Bearer {token}",
        "--report",
        "junit",
        "--report-dir",
        str(report),
        *filters,
    ]
    # In the run's own folder: schemathesis keeps a cache (`.schemathesis/`) where it runs.
    process = await asyncio.create_subprocess_exec(
        *command, cwd=report, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        raise
    assert process.returncode is not None
    return Run(process.returncode, output.decode("utf-8", "replace"))


def summary(output: str) -> str:
    """The run's own account without its failures: each phase's time and results, then operations tested,
    cases generated, failures by kind."""
    head = output[: output.find("FAILURES")] if "FAILURES" in output else output[: output.find("SUMMARY")]
    start = output.rfind("API Operations:")
    return head + (output[start:] if start >= 0 else "")


@pytest.mark.parametrize("fuzzed", FUZZED, ids=lambda fuzzed: fuzzed.name)
async def test_every_answer_is_one_the_spec_names(fuzzed: Fuzzed, users, stack, tmp_path):
    async with fuzzed.running(stack, tmp_path, users) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/openapi.json")).status_code == 200
        runs = [await fuzz(url, await signed_in(users), _folder(tmp_path, "main"), *_excluding(fuzzed.alone))]
        for path in fuzzed.alone:
            own_folder = _folder(tmp_path, path.strip("/").replace("/", "-"))
            runs.append(await fuzz(url, await signed_in(users), own_folder, "--include-path", path))
    for run in runs:
        print(summary(run.stdout))
    failed = [run for run in runs if run.returncode != 0]
    assert not failed, "\n\n".join(run.stdout[-20000:] for run in failed)


def _folder(parent: Path, name: str) -> Path:
    folder = parent / name
    folder.mkdir()
    return folder


def _excluding(paths: tuple[str, ...]) -> list[str]:
    return [argument for path in paths for argument in ("--exclude-path", path)]
