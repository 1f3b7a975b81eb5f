"""Starting and killing our own processes (stream workers, services) the way an operator would."""

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from config.settings import PROJECT_ROOT


class WorkerProcess:
    """A `python -m <module> worker` subprocess with its own environment and log file."""

    def __init__(
        self, module: str, env: dict[str, str], log_path: Path, args: Sequence[str] = ("worker", "-l", "info")
    ) -> None:
        self.module = module
        self.args = list(args)
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, no offset is committed on the way out."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        stop_process_group(self.process)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass(frozen=True)
class Projection:
    """One projection worker: its module, the setting naming its group, what it reads, and the
    checkpoints (`projection_checkpoints.projection`) its stores keep per topic read."""

    name: str  # its group in production, e.g. user-projection
    module: str
    group_setting: str  # the setting naming its group, e.g. HI_USER_PROJECTION_GROUP
    topics: tuple[str, ...]
    stores: dict[str, tuple[str, ...]]  # topic -> checkpoint names
    env: dict[str, str] = field(default_factory=dict)
    group: str | None = None  # a group chosen by the test (its checkpoints name it); else one is made

    def worker(self, group: str, log_dir: Path) -> WorkerProcess:
        return WorkerProcess(self.module, {**self.env, self.group_setting: group}, log_dir / f"{group}.log")


def stop_process_group(process: subprocess.Popen[bytes] | None, grace_seconds: float = 20) -> None:
    """SIGTERM to the process's own group (started with start_new_session), SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
