"""What a stream worker tells Prometheus, on its own port (`HI_METRICS_PORT`; 0, the default, serves none).

- per consumer group and partition: the committed offset, the log end and the lag
  (`streams/consumer_lag.py`);
- per projection (the consumer name its dead letters carry): the age of the last event it applied,
  from the Kafka timestamp of the newest record of its last applied batch;
- dead letters by consumer and reason; notifications by channel and outcome; rebuild progress.
The metric objects live in prometheus-client's default registry (one per worker process); creating
them opens nothing, the port is bound when the worker starts.
"""

import logging
import re
import time
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, disable_created_metrics, start_http_server

from streams.positions import RawRecord

log = logging.getLogger("streams.metrics")

disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series double the output and no dashboard reads them

COMMITTED = Gauge(
    "hi_consumer_committed_offset", "The group's committed offset (-1: none yet)", ["group", "topic", "partition"]
)
LOG_END = Gauge("hi_consumer_log_end_offset", "The partition's log end offset", ["group", "topic", "partition"])
LAG = Gauge("hi_consumer_lag", "Records the group has not committed yet", ["group", "topic", "partition"])
LAST_EVENT_AGE = Gauge(
    "hi_projection_last_event_age_seconds",
    "Age of the newest event the projection applied (now minus its Kafka timestamp)",
    ["projection"],
)
DEAD_LETTERS = Counter("hi_dead_letters", "Messages sent to the dead-letter topic", ["consumer", "reason"])
NOTIFICATIONS = Counter(
    "hi_notifications", "Notification outcomes reported, by channel and outcome", ["channel", "outcome"]
)
REBUILD_PROCESSED = Gauge("hi_history_rebuild_events_processed", "Events the running rebuild has processed", ["job"])
REBUILD_TOTAL = Gauge("hi_history_rebuild_events_total", "Events the running rebuild has to process", ["job"])
REBUILD_RATE = Gauge("hi_history_rebuild_events_per_second", "The running rebuild's rate", ["job"])
REBUILD_RUNNING = Gauge("hi_history_rebuild_running", "1 while a rebuild job runs")

# ---- the age of the last applied event ----

_last_applied: dict[str, float] = {}


def applied(projection: str, records: Sequence[RawRecord]) -> None:
    """Called once a batch is applied (or dead-lettered: handled either way)."""
    newest = max((r.timestamp for r in records if r.timestamp is not None), default=None)
    if newest is None:
        return
    if projection not in _last_applied:
        # Computed at scrape time, so the age keeps growing while nothing is applied.
        LAST_EVENT_AGE.labels(projection).set_function(lambda: time.time() - _last_applied[projection])
    _last_applied[projection] = max(newest, _last_applied.get(projection, newest))


# ---- dead letters ----

# A dead letter's error is free text (it names ids and values); its reason label is one of a few kinds.
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"failed: (\w+):"), r"crash:\1"),
    (re.compile(r"^postgres refused"), "refused by postgres"),
    (re.compile(r"refused|rejected", re.IGNORECASE), "refused by a store"),
    (
        re.compile(r"^(empty message|malformed JSON|an event is|unsupported specversion|invalid |event contains)"),
        "undecodable",
    ),
    (re.compile(r"^(email|sms|in_app): "), "delivery gave up"),
)


def dead_letter_reason(error: str) -> str:
    for pattern, reason in _REASONS:
        found = pattern.search(error)
        if found:
            return found.expand(reason)
    return "other"


def dead_lettered(consumer: str, error: str) -> None:
    # A rebuild's consumer is `user-history-rebuild:<job>`: one series per kind, not per job.
    DEAD_LETTERS.labels(consumer.split(":", 1)[0], dead_letter_reason(error)).inc()


def notified(channel: str, outcome: str) -> None:
    """An outcome reported (sent, deferred, failed, suppressed); at least once, like the report itself."""
    NOTIFICATIONS.labels(channel, outcome).inc()


def serve(host: str, port: int) -> bool:
    """Bind the metrics port (in a thread of prometheus-client's); False when it is taken."""
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.error("metrics not served on %s:%d: %s", host, port, exc)
        return False
    log.info("metrics at http://%s:%d/metrics", host, port)
    return True
