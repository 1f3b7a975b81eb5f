"""A second native stack beside the first: the same HI_*_PORT variables move `ops/stack.sh` and the settings
every process (and the test suite) reads, so code pointed at one stack never talks to the other."""

import subprocess

import pytest

from config.settings import PROJECT_ROOT, Settings

PORTS = {"HI_KAFKA_PORT": "19092", "HI_POSTGRES_PORT": "15433", "HI_REDIS_PORT": "16380", "HI_OPENSEARCH_PORT": "9210"}


@pytest.fixture
def no_endpoints(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HI_KAFKA_BOOTSTRAP", "HI_REDIS_URL", "HI_OPENSEARCH_URL", *PORTS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_default_endpoints_are_the_shared_stack(no_endpoints):
    settings = Settings()
    assert (settings.kafka_bootstrap, settings.postgres_port) == ("127.0.0.1:9092", 5433)
    assert (settings.redis_url, settings.opensearch_url) == ("redis://127.0.0.1:6380/0", "http://127.0.0.1:9200")


def test_the_ports_move_every_endpoint(no_endpoints):
    for name, value in PORTS.items():
        no_endpoints.setenv(name, value)
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.postgres_port == 15433
    assert settings.redis_url == "redis://127.0.0.1:16380/0"
    assert settings.opensearch_url == "http://127.0.0.1:9210"


def test_an_endpoint_given_whole_wins_over_its_port(no_endpoints):
    no_endpoints.setenv("HI_KAFKA_PORT", "19092")
    no_endpoints.setenv("HI_KAFKA_BOOTSTRAP", "127.0.0.1:29092,127.0.0.1:29094")
    assert Settings().kafka_bootstrap == "127.0.0.1:29092,127.0.0.1:29094"


def stack_status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROJECT_ROOT / "ops" / "stack.sh"), "status"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_stack_script_reads_the_same_ports_and_state_dir(tmp_path):
    done = stack_status({"HI_STATE_DIR": str(tmp_path / "second"), **PORTS})
    assert done.returncode == 0, done.stderr
    ports = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()[1:5]}
    assert ports == {"postgres": "15433", "redis": "16380", "kafka": "19092", "opensearch": "9210"}
    assert f"state dir: {tmp_path / 'second'}" in done.stdout


def test_the_stack_script_refuses_an_opensearch_port_the_runner_would_not_serve(tmp_path):
    done = stack_status({"HI_STATE_DIR": str(tmp_path), "HI_OPENSEARCH_PORT": "19200"})
    assert done.returncode != 0
    assert "HI_OPENSEARCH_PORT=19200" in done.stderr
