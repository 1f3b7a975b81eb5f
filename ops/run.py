"""Run the whole system in the foreground: the stream workers and the six services.

`python -m ops.run` (what `make run` ends with, after the stack, migrations and topics). The pure
projections share one process (`python -m streams.host ...`, each its own consumer group); every other
part is its own process, logging to `.state/logs/<name>.log`. Ctrl-C or SIGTERM stops them all; if one exits on
its own the others are stopped too, so a broken part is noticed rather than left half-running.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from api.services import SERVICES
from config import get_settings

STOP_GRACE_SECONDS = 15
# Stream workers serve their metrics from this port up, one each in the order below (services serve theirs
# at /metrics on their own port); ops/prometheus/prometheus.yml scrapes the same ports.
FIRST_WORKER_METRICS_PORT = 9101


@dataclass(frozen=True)
class Part:
    name: str
    command: list[str]
    url: str | None = None
    # `python -m ops.healthcheck` arguments that tell it is healthy: a worker once its consumer group has
    # settled, a service once /ready answers. docker-compose.yml runs them (tests/unit/test_compose.py).
    probe: tuple[str, ...] = ()
    metrics_port: int | None = None  # a stream worker's `HI_METRICS_PORT`

    @property
    def env(self) -> dict[str, str]:
        return {"HI_METRICS_PORT": str(self.metrics_port)} if self.metrics_port else {}

    def metrics_url(self, host: str) -> str | None:
        if self.metrics_port:
            return f"http://{host}:{self.metrics_port}/metrics"
        return f"{self.url}/metrics" if self.url else None


def parts(host: str) -> list[Part]:
    settings = get_settings()

    # The deciders' groups are their app ids, constants of modules too heavy to import here; the stream
    # tests check every group named here against its app (tests/streams/test_worker_groups.py).
    def worker(name: str, module: str, group: str) -> Part:
        return Part(name, [sys.executable, "-m", module, "worker", "-l", "info"], probe=("group", group))

    # The projections on the lean runner (streams/runner.py) share one host process, each its own
    # consumer group; its probe waits for every one of them. The workers below own Faust tables (the
    # deciders) or are Faust apps for reasons of their own (topology.md, "Consumer groups").
    hosted = [
        ("event-archive", settings.archive_group),
        ("property-projection", settings.property_projection_group),
        ("property-search-projection", settings.property_search_projection_group),
        ("search-projection", settings.search_projection_group),
        ("saved-search-matcher", settings.saved_search_matcher_group),
        ("user-projection", settings.user_projection_group),
        ("file-projection", settings.file_projection_group),
        ("user-history", settings.history_group),
        ("notification-projection", settings.notification_projection_group),
    ]
    projection_host = Part(
        "projection-host",
        [sys.executable, "-m", "streams.host", *(name for name, _ in hosted)],
        probe=("group", *(group for _, group in hosted)),
    )
    workers = [
        projection_host,
        worker("property-decider", "streams.properties.decider_app", "property-decider"),
        worker("user-registry", "streams.users.registry_app", "user-registry"),
        worker("user-account", "streams.users.account_app", "user-account"),
        worker("file-optimizer", "streams.files.optimizer_worker", settings.file_optimizer_group),
        worker("user-history-replayer", "streams.history.replay_worker", settings.history_replay_group),
        worker("notification-delivery", "streams.notifications.delivery_worker", settings.notification_delivery_group),
    ]
    # Cluster mode runs each worker `worker_instances` times: one consumer group, its partitions shared
    # among them. The first instance keeps the worker's name and metrics port, so single mode is unchanged.
    workers = [
        replace(w, name=w.name if i == 1 else f"{w.name}-{i}")
        for i in range(1, settings.worker_instances + 1)
        for w in workers
    ]
    workers = [replace(w, metrics_port=FIRST_WORKER_METRICS_PORT + n) for n, w in enumerate(workers)]
    sinks = [
        # Where notifications go on a developer's machine: `python -m ops.mailbox list`, `ops.sms_sink list`.
        Part(
            "mailbox",
            [sys.executable, "-m", "ops.mailbox", "serve", "--host", host, "--port", str(settings.smtp_port)],
            probe=("tcp", "127.0.0.1", str(settings.smtp_port)),
        ),
        Part(
            "sms-sink",
            [sys.executable, "-m", "ops.sms_sink", "serve", "--host", host, "--port", str(settings.sms_sink_port)],
            probe=("tcp", "127.0.0.1", str(settings.sms_sink_port)),
        ),
    ]
    # More than one server process per service: uvicorn's --workers, all on the service's port.
    processes = ["--workers", str(settings.service_processes)] if settings.service_processes > 1 else []
    services = [
        Part(
            spec.name,
            [*spec.command(host), *processes],
            f"http://{host}:{spec.port}",
            probe=("http", f"http://127.0.0.1:{spec.port}/ready"),
        )
        for spec in SERVICES
    ]
    # A part's name keys its process and names its log (tests/unit/test_run_parts.py keeps them unique).
    return workers + sinks + services


PROMETHEUS_CONFIG = Path(__file__).resolve().parent / "prometheus" / "prometheus.yml"
PROMETHEUS_ADDRESS = "127.0.0.1:9090"


def prometheus_part() -> Part | None:
    """Debian's `prometheus` scraping every part's metrics (ops/prometheus/prometheus.yml), when installed."""
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    data = get_settings().state_dir / "prometheus"
    command = [
        binary,
        f"--config.file={PROMETHEUS_CONFIG}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={PROMETHEUS_ADDRESS}",
    ]
    return Part("prometheus", command, url=f"http://{PROMETHEUS_ADDRESS}")


def start(part: Part) -> subprocess.Popen[bytes]:
    logs = get_settings().state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{part.name}.log").open("ab") as log:
        # Own process group: Ctrl-C reaches only us, and we stop the children in order.
        return subprocess.Popen(
            part.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **part.env},
        )


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
    parser.add_argument("--observe", action="store_true", help="also start Prometheus (`make run OBSERVE=1`)")
    args = parser.parse_args(argv)

    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    everything = parts(args.host)
    observer = prometheus_part() if args.observe else None
    if args.observe and observer is None:
        print("prometheus is not installed (Debian: apt-get install prometheus); not observing", file=sys.stderr)
    children = {part.name: start(part) for part in everything}
    print("Hyderabad Infra is running (Ctrl-C stops it):", flush=True)
    for part in everything:
        where = f"{part.url}/docs  (ready: {part.url}/ready, staleness: {part.url}/status)" if part.url else ""
        metrics = part.metrics_url(args.host)
        print(f"  {part.name:<26} {where or (f'metrics: {metrics}' if metrics else 'local sink')}", flush=True)
    print(f"  {'metrics':<26} each service at /metrics, each stream worker at the port above", flush=True)
    if observer is not None:
        children[observer.name] = start(observer)
        print(f"  {'prometheus':<26} {observer.url}  (dashboard: ops/grafana/hyderabad-infra.json)", flush=True)
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
