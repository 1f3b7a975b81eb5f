"""`make run`'s parts (ops/run.py): a part's name keys its process and names its log, so two parts of one
name would share a log and the first would never be stopped."""

from collections import Counter

import yaml

from config import get_settings
from ops.run import PROMETHEUS_CONFIG, parts


def test_every_part_has_a_name_of_its_own():
    names = Counter(part.name for part in parts("127.0.0.1"))
    assert [name for name, count in names.items() if count > 1] == []


def test_every_stream_worker_module_is_started_once():
    modules = Counter(part.command[2] for part in parts("127.0.0.1") if part.command[2].startswith("streams."))
    assert modules, "make run starts stream workers"
    assert [module for module, count in modules.items() if count > 1] == []


def test_prometheus_scrapes_every_part_that_serves_metrics():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    scraped = {
        target for job in config["scrape_configs"] for static in job["static_configs"] for target in static["targets"]
    }
    served = {url.split("/")[2] for part in parts("127.0.0.1") if (url := part.metrics_url("127.0.0.1"))}
    assert scraped == served


def test_every_stream_worker_has_a_metrics_port_of_its_own():
    ports = [part.metrics_port for part in parts("127.0.0.1") if part.command[2].startswith("streams.")]
    assert None not in ports
    assert len(set(ports)) == len(ports)


def test_cluster_mode_runs_every_worker_twice_in_one_group_and_two_processes_per_service(monkeypatch):
    monkeypatch.setenv("HI_WORKER_INSTANCES", "2")
    monkeypatch.setenv("HI_SERVICE_PROCESSES", "2")
    get_settings.cache_clear()
    try:
        everything = parts("127.0.0.1")
    finally:
        get_settings.cache_clear()
    workers = [part for part in everything if part.command[2].startswith("streams.")]
    per_module = Counter(part.command[2] for part in workers)
    assert set(per_module.values()) == {2}
    # Each instance of a worker joins the same consumer group (what the probe waits for).
    groups = Counter(part.probe for part in workers)
    assert set(groups.values()) == {2}
    assert len({part.name for part in everything}) == len(everything)
    assert len({part.metrics_port for part in workers}) == len(workers)
    services = [part for part in everything if part.url]
    assert services and all(part.command[-2:] == ["--workers", "2"] for part in services)
