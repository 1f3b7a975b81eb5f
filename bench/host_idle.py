# ruff: noqa: E402  (the project root goes on sys.path before the imports)
"""Benchmark: the CPU at rest of the projection host against the nine Faust workers it replaced.

    .venv/bin/python bench/host_idle.py --faust-tree DIR [--seconds 60]

DIR is an older checkout whose nine pure projections are Faust apps, e.g.
`mkdir DIR && git archive 4d96d94 | tar -x -C DIR`. A Kafka and a Redis of the run's own
(tests/support/private_stack.py: its own ports and state, a database of its own on the shared Postgres,
migrations and topics as an operator makes them), so no event arrives while it measures. Starts, side by
side on that stack, the older checkout's nine worker processes (`python -m <module> worker`, groups
`faust-<group>`) and this checkout's one `python -m streams.host` of the nine, each with its metrics
port and lag sampling as `make run` has them; waits until all eighteen groups are stable and lets them
settle, then reads user + system CPU from /proc/<pid>/stat at the start and the end of `--seconds`, and
prints % of a core per process and for each side. Stops everything and drops the stack afterwards.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/host_idle.py`

from config import get_settings
from ops.healthcheck import groups_are_stable
from tests.support.private_stack import PrivateStack
from tests.support.processes import stop_process_group
from tests.support.services import free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The older checkout's worker module and group setting for each projection the host runs. (Neither
# streams.host nor anything that imports Faust is imported here: with Faust imported, aiokafka's admin
# client fails to decode DescribeGroups answers in this process.)
FAUST_WORKERS = {
    "event-archive": ("streams.archive", "HI_ARCHIVE_GROUP"),
    "property-projection": ("streams.properties.projection_worker", "HI_PROPERTY_PROJECTION_GROUP"),
    "property-search-projection": ("streams.properties.search_worker", "HI_PROPERTY_SEARCH_PROJECTION_GROUP"),
    "search-projection": ("streams.searches.projection_worker", "HI_SEARCH_PROJECTION_GROUP"),
    "saved-search-matcher": ("streams.searches.matcher_worker", "HI_SAVED_SEARCH_MATCHER_GROUP"),
    "user-projection": ("streams.users.projection_worker", "HI_USER_PROJECTION_GROUP"),
    "file-projection": ("streams.files.projection_worker", "HI_FILE_PROJECTION_GROUP"),
    "user-history": ("streams.history.projection_worker", "HI_HISTORY_GROUP"),
    "notification-projection": ("streams.notifications.projection_worker", "HI_NOTIFICATION_PROJECTION_GROUP"),
}
HOSTED = list(FAUST_WORKERS)
SETTLE_SECONDS = 15  # after every group is stable: start-up work (imports done, first lag samples) passes


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def group_of(settings: object, setting: str) -> str:
    return str(getattr(settings, setting.removeprefix("HI_").lower()))


def start(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faust-tree", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    settings = get_settings()
    scratch = Path(tempfile.mkdtemp(prefix="bench-host-idle-"))
    stack = PrivateStack(scratch / "stack", settings.postgres_dsn)
    logs = ROOT / ".state" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        stack.start()
        # Neither side reaches OpenSearch at rest; the shared one is named so that a start-up check could.
        base = {**os.environ, **stack.env(), "HI_OPENSEARCH_URL": settings.opensearch_url}
        groups = [group_of(settings, setting) for _, setting in FAUST_WORKERS.values()]
        faust_groups = []
        for name, (module, setting) in FAUST_WORKERS.items():
            group = f"faust-{group_of(settings, setting)}"
            faust_groups.append(group)
            env = {
                **base,
                setting: group,
                "PYTHONPATH": str(args.faust_tree),
                "HI_METRICS_PORT": str(free_port()),
            }
            # Faust keeps a data directory per app in its working directory: the scratch one.
            command = [sys.executable, "-m", module, "worker", "-l", "warn"]
            processes[f"faust {name}"] = start(command, env, scratch, logs / f"bench-host-idle-faust-{name}.log")
        env = {**base, "PYTHONPATH": str(ROOT), "HI_METRICS_PORT": str(free_port())}
        command = [sys.executable, "-m", "streams.host", *HOSTED, "-l", "warning"]
        processes["projection-host"] = start(command, env, ROOT, logs / "bench-host-idle-host.log")

        deadline = time.monotonic() + 600
        while not asyncio.run(groups_are_stable(stack.kafka_bootstrap, groups + faust_groups)):
            if any(p.poll() is not None for p in processes.values()) or time.monotonic() > deadline:
                raise RuntimeError("a worker stopped or a group never settled; see .state/logs/bench-host-idle-*")
            time.sleep(2)
        time.sleep(SETTLE_SECONDS)
        before = {name: cpu_seconds(p.pid) for name, p in processes.items()}
        started = time.monotonic()
        time.sleep(args.seconds)
        after = {name: cpu_seconds(p.pid) for name, p in processes.items()}
        span = time.monotonic() - started
        if any(p.poll() is not None for p in processes.values()):
            raise RuntimeError("a worker stopped while measured")
        percent = {name: 100 * (after[name] - before[name]) / span for name in processes}
        print(f"at rest over {span:.0f} s, % of a core (user + system, /proc/<pid>/stat):")
        for name, value in sorted(percent.items()):
            print(f"  {name:<36} {value:6.2f}")
        faust = sum(v for n, v in percent.items() if n.startswith("faust "))
        print(f"  {'nine Faust workers, summed':<36} {faust:6.2f}")
        print(f"  {'one projection host (nine groups)':<36} {percent['projection-host']:6.2f}")
    finally:
        for process in processes.values():
            stop_process_group(process)
        stack.stop()


if __name__ == "__main__":
    main()
