"""docker-compose.yml runs what `make run` runs (ops/run.py), so neither can drift from the other; no Docker
engine answers here, so the file is checked as it is written: against `make run`'s parts, for health and
the order of starting, and against the Compose specification's JSON schema.

tests/support/compose-spec.json is the Compose specification's schema (github.com/compose-spec/compose-spec,
schema/compose-spec.json, Apache-2.0) as check-jsonschema 0.39.0 (PyPI) vendors it:
check_jsonschema/builtin_schemas/vendor/compose-spec.json, sha256 d549057e…0e64. Refresh it from a newer
check-jsonschema and update the digest below.
"""

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from api.services import SERVICES
from ops.run import Part, parts

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "support" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
# The engines and the one-shot preparation (`make prepare`): what `make up` and `make prepare` do natively.
STACK = {"kafka", "postgres", "redis", "opensearch"}
PREPARE = "init"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def run_parts() -> dict[str, Part]:
    # Containers listen on every interface of their own network; ports are published to 127.0.0.1 only.
    return {part.name: part for part in parts("0.0.0.0")}


def in_container(command: list[str]) -> list[str]:
    """A part's command as the image runs it: its `python` instead of this interpreter's path."""
    assert command[0] == sys.executable
    return ["python", *command[1:]]


def test_the_file_follows_the_compose_specification(compose):
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256, "schema changed: note where from"
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(compose)


def test_the_schema_check_refuses_a_broken_file(compose):
    """The validation above can fail: a misspelt condition is refused."""
    schema = json.loads(SCHEMA.read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["property"]["depends_on"]["kafka"]["condition"] = "service_up"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validators.validator_for(schema)(schema).validate(broken)


def test_one_container_per_part_of_make_run(compose, run_parts):
    containers = set(compose["services"]) - STACK - {PREPARE}
    assert sorted(containers) == sorted(run_parts)


def test_each_container_runs_its_part_command(compose, run_parts):
    for name, part in run_parts.items():
        assert compose["services"][name]["command"] == in_container(part.command), name


def test_each_container_has_its_parts_environment_and_publishes_its_metrics(compose, run_parts):
    for name, part in run_parts.items():
        service = compose["services"][name]
        assert part.env.items() <= service["environment"].items(), name
        if part.metrics_port:
            # Published where ops/prometheus/prometheus.yml scrapes the native stack, so one config serves both.
            assert f"127.0.0.1:{part.metrics_port}:{part.metrics_port}" in service["ports"], name
            assert service["environment"]["HI_METRICS_HOST"] == "0.0.0.0", name


def test_the_prepare_step_runs_make_prepare():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^prepare:\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    steps = [line.strip().removeprefix("$(PY) ") for line in recipe.group(1).splitlines()]
    compose_steps = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][PREPARE]["command"]
    assert compose_steps[:2] == ["sh", "-c"]
    assert compose_steps[2].split(" && ") == [f"python {step}" for step in steps]


def test_every_part_has_the_healthcheck_it_names(compose, run_parts):
    for name, part in run_parts.items():
        assert part.probe, f"{name} names no health probe"
        healthcheck = compose["services"][name]["healthcheck"]
        assert healthcheck["test"] == ["CMD", "python", "-m", "ops.healthcheck", *part.probe], name
    for name in STACK:
        assert compose["services"][name]["healthcheck"]["test"], name


def test_containers_wait_on_the_health_of_what_they_need(compose):
    services = compose["services"]
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if needed == PREPARE else "service_healthy"
            assert how == {"condition": expected}, f"{name} -> {needed}"
            if expected == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits on {needed}, which has no healthcheck"
    for name in set(services) - STACK - {PREPARE, "mailbox", "sms-sink"}:
        assert set(services[name]["depends_on"]) >= STACK | {PREPARE}, name
    assert {"mailbox", "sms-sink"} <= set(services["notification-delivery"]["depends_on"])


def test_addresses_inside_containers_name_compose_services(compose):
    services = compose["services"]
    # Only the engines speak of 127.0.0.1: Kafka advertises it to clients on the host.
    for name in set(services) - STACK:
        for key, value in (services[name].get("environment") or {}).items():
            assert not re.search(r"127\.0\.0\.1|localhost", str(value)), f"{name}: {key}={value}"
    env = services["notification-delivery"]["environment"]
    assert env["HI_SMTP_HOST"] == "mailbox"
    assert env["HI_SMTP_PORT"] == services["mailbox"]["command"][-1]
    sms = urlsplit(env["HI_SMS_API_URL"])
    assert sms.hostname == "sms-sink"
    assert str(sms.port) == services["sms-sink"]["command"][-1]
    assert urlsplit(env["HI_OPENSEARCH_URL"]).hostname == "opensearch"
    assert env["HI_POSTGRES_HOST"] == "postgres"
    assert env["HI_KAFKA_BOOTSTRAP"].split(":")[0] == "kafka"


def test_services_are_published_on_their_ports(compose):
    for spec in SERVICES:
        assert compose["services"][spec.name]["ports"] == [f"127.0.0.1:{spec.port}:{spec.port}"]


def test_containers_run_as_a_user_of_their_own():
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users, "the Dockerfile names a user"
    assert users[-1].split(":")[0] not in {"root", "0"}
