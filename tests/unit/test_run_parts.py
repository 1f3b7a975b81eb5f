"""`make run`'s parts (ops/run.py): a part's name keys its process and names its log, so two parts of one
name would share a log and the first would never be stopped."""

from collections import Counter

import yaml

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
