"""Stream worker metrics that need no broker: dead-letter reasons stay a few kinds whatever the error
says, a projection's last-event age is measured from the newest event it applied, and the Grafana
dashboard reads only series that exist."""

import json
import re
import time

from prometheus_client import REGISTRY

from config.settings import PROJECT_ROOT
from streams.metrics import applied, dead_letter_reason, dead_lettered
from streams.positions import RawRecord, SourcePosition


def test_a_dead_letter_reason_is_one_of_a_few_kinds_not_the_error_text():
    assert dead_letter_reason("property-projection failed: KeyError: 'prop-123'") == "crash:KeyError"
    assert dead_letter_reason("postgres refused the event: value too long for prop-9") == "refused by postgres"
    assert dead_letter_reason("malformed JSON: unexpected character at line 1") == "undecodable"
    assert dead_letter_reason("invalid property.updated.v1 data: price: must be positive") == "undecodable"
    assert dead_letter_reason("email: permanent: 550 no such mailbox") == "delivery gave up"
    assert dead_letter_reason("cannot optimise file-0a1b: cannot identify image file") == "other"


def test_the_last_event_age_is_measured_from_the_newest_applied_event():
    now = time.time()
    records = [
        RawRecord(b"k", b"v", SourcePosition("properties", 0, n), timestamp=now - age) for n, age in enumerate((90, 30))
    ]
    applied("unit-test-projection", records)
    age = REGISTRY.get_sample_value("hi_projection_last_event_age_seconds", {"projection": "unit-test-projection"})
    assert age is not None and 30 <= age < 40
    applied("unit-test-projection", records[:1])  # an older event applied late does not make it younger or older
    age = REGISTRY.get_sample_value("hi_projection_last_event_age_seconds", {"projection": "unit-test-projection"})
    assert age is not None and 30 <= age < 40


def test_the_dashboard_reads_only_series_the_parts_export():
    import api.common.metrics  # noqa: F401  (registers the services' metrics beside the workers')

    dashboard = json.loads((PROJECT_ROOT / "ops" / "grafana" / "hyderabad-infra.json").read_text())
    exported = {sample_name(family.name, family.type) for family in REGISTRY.collect() if family.name.startswith("hi_")}
    exported = {name for names in exported for name in names}
    read = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bhi_\w+", target["expr"])
    }
    assert read, "the dashboard has panels"
    assert read <= exported, sorted(read - exported)


def sample_name(name: str, kind: str) -> tuple[str, ...]:
    if kind == "counter":
        return (f"{name}_total",)
    if kind == "histogram":
        return (f"{name}_bucket", f"{name}_count", f"{name}_sum")
    return (name,)


def test_a_rebuilds_dead_letters_are_counted_under_one_consumer_not_one_per_job():
    labels = {"consumer": "user-history-rebuild", "reason": "undecodable"}
    before = REGISTRY.get_sample_value("hi_dead_letters_total", labels) or 0.0
    dead_lettered("user-history-rebuild:job-0a1b2c", "malformed JSON: unexpected end")
    dead_lettered("user-history-rebuild:job-3d4e5f", "malformed JSON: unexpected end")
    assert REGISTRY.get_sample_value("hi_dead_letters_total", labels) == before + 2
