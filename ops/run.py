"""Run the whole system in the foreground: the stream workers and the six services.

`python -m ops.run` (what `make run` ends with, after the stack, migrations and topics). Each is its
own process, logging to `.state/logs/<name>.log`. Ctrl-C or SIGTERM stops them all; if one exits on
its own the others are stopped too, so a broken part is noticed rather than left half-running.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

from api.services import SERVICES
from config import get_settings

STOP_GRACE_SECONDS = 15


@dataclass(frozen=True)
class Part:
    name: str
    command: list[str]
    url: str | None = None


def parts(host: str) -> list[Part]:
    workers = [
        Part("event-archive", [sys.executable, "-m", "streams.archive", "worker", "-l", "info"]),
        Part("property-decider", [sys.executable, "-m", "streams.properties.decider_app", "worker", "-l", "info"]),
        Part(
            "property-projection",
            [sys.executable, "-m", "streams.properties.projection_worker", "worker", "-l", "info"],
        ),
        Part(
            "property-search-projection",
            [sys.executable, "-m", "streams.properties.search_worker", "worker", "-l", "info"],
        ),
        Part("search-projection", [sys.executable, "-m", "streams.searches.projection_worker", "worker", "-l", "info"]),
        Part("saved-search-matcher", [sys.executable, "-m", "streams.searches.matcher_worker", "worker", "-l", "info"]),
        Part("user-registry", [sys.executable, "-m", "streams.users.registry_app", "worker", "-l", "info"]),
        Part("user-account", [sys.executable, "-m", "streams.users.account_app", "worker", "-l", "info"]),
        Part("user-projection", [sys.executable, "-m", "streams.users.projection_worker", "worker", "-l", "info"]),
        Part("file-projection", [sys.executable, "-m", "streams.files.projection_worker", "worker", "-l", "info"]),
        Part("file-optimizer", [sys.executable, "-m", "streams.files.optimizer_worker", "worker", "-l", "info"]),
        Part(
            "user-history-projection",
            [sys.executable, "-m", "streams.history.projection_worker", "worker", "-l", "info"],
        ),
        Part("user-history-replayer", [sys.executable, "-m", "streams.history.replay_worker", "worker", "-l", "info"]),
        Part(
            "notification-delivery",
            [sys.executable, "-m", "streams.notifications.delivery_worker", "worker", "-l", "info"],
        ),
        Part(
            "notification-projection",
            [sys.executable, "-m", "streams.notifications.projection_worker", "worker", "-l", "info"],
        ),
        # Where notifications go on a developer's machine: `python -m ops.mailbox list`, `ops.sms_sink list`.
        Part("mailbox", [sys.executable, "-m", "ops.mailbox", "serve"]),
        Part("sms-sink", [sys.executable, "-m", "ops.sms_sink", "serve"]),
    ]
    services = [
        Part(
            spec.name,
            spec.command(host),
            f"http://{host}:{spec.port}",
        )
        for spec in SERVICES
    ]
    # A part's name keys its process and names its log (tests/unit/test_run_parts.py keeps them unique).
    return workers + services


def start(part: Part) -> subprocess.Popen[bytes]:
    logs = get_settings().state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{part.name}.log").open("ab") as log:
        # Own process group: Ctrl-C reaches only us, and we stop the children in order.
        return subprocess.Popen(part.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for child in children.values():
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, child in children.items():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop within {STOP_GRACE_SECONDS}s; killing it", file=sys.stderr)
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.run", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    everything = parts(args.host)
    children = {part.name: start(part) for part in everything}
    print("Hyderabad Infra is running (Ctrl-C stops it):", flush=True)
    for part in everything:
        where = f"{part.url}/docs  (ready: {part.url}/ready)" if part.url else "stream worker"
        print(f"  {part.name:<14} {where}", flush=True)
    print(f"  logs           {get_settings().state_dir / 'logs'}", flush=True)
    exit_code = 0
    try:
        while not stopping:
            exited = {name: child.returncode for name, child in children.items() if child.poll() is not None}
            if exited:
                print(f"exited on their own: {exited}; stopping the others (see their logs)", file=sys.stderr)
                exit_code = 1
                break
            time.sleep(0.5)
    finally:
        stop(children)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
