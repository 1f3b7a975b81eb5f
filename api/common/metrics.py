"""What a service tells Prometheus at `/metrics`: requests, command decisions, consistency waits, staleness.

Requests are counted by route template (`/api/properties/{property_id}`, never the raw path) so the
number of series stays bounded whatever clients send; a path no route matches is `unmatched`. Label
children are cached, so a request costs one dictionary lookup and two observations.
The metric objects live in prometheus-client's default registry, one per process (each service is
its own process); creating them opens nothing.
"""

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from starlette.types import Scope

disable_created_metrics()  # `_created` series double the output and no dashboard reads them

# Seconds; a service answers most requests in milliseconds, a command waits up to its decider's bound.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "hi_http_requests", "HTTP requests answered, by route template, method and status", ["route", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "hi_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
COMMAND_SECONDS = Histogram(
    "hi_command_decision_wait_seconds",
    "Time a command endpoint waited for its decider, by outcome (accepted, rejected, no_decision)",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
COMMAND_OUTCOMES = Counter(
    "hi_command_outcomes", "Commands sent, by topic and outcome; no_decision is answered 503", ["topic", "outcome"]
)
CONSISTENCY_SECONDS = Histogram(
    "hi_consistency_wait_seconds",
    "Time a query sent with X-Consistency-Token waited for its store, by projection",
    ["projection"],
    buckets=_LATENCY_BUCKETS,
)
CONSISTENCY_WAITS = Counter(
    "hi_consistency_waits",
    "Queries that waited for their store, by projection and result (applied, timed_out: answered stale)",
    ["projection", "result"],
)
READ_MODEL_LAG = Gauge(
    "hi_read_model_lag", "Events in Kafka the read model has not applied yet (log end minus checkpoint)", ["read_model"]
)
READ_MODEL_AGE = Gauge(
    "hi_read_model_last_event_age_seconds",
    "Seconds since the read model last applied an event (its newest checkpoint)",
    ["read_model"],
)

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_command_children: dict[tuple[str, str], tuple[Any, Any]] = {}
_consistency_children: dict[tuple[str, bool], tuple[Any, Any]] = {}


def _request_child(route: str, method: str, status: int) -> tuple[Any, Any]:
    key = (route, method, status)
    children = _request_children.get(key)
    if children is None:
        children = (REQUESTS.labels(route, method, str(status)), REQUEST_SECONDS.labels(route, method))
        _request_children[key] = children
    return children


def observe_command(topic: str, outcome: str, seconds: float) -> None:
    key = (topic, outcome)
    children = _command_children.get(key)
    if children is None:
        children = (COMMAND_OUTCOMES.labels(topic, outcome), COMMAND_SECONDS.labels(outcome))
        _command_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def observe_consistency_wait(projection: str, applied: bool, seconds: float) -> None:
    key = (projection, applied)
    children = _consistency_children.get(key)
    if children is None:
        result = "applied" if applied else "timed_out"
        children = (CONSISTENCY_WAITS.labels(projection, result), CONSISTENCY_SECONDS.labels(projection))
        _consistency_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    """Called by the request-log middleware once a request is answered, so the response is not wrapped a
    second time. Starlette's router has put the matched route in the request's scope by then, so
    `scope["route"].path` is the template (`unmatched` when no route was reached: an unknown path, or a
    request refused at the door)."""
    route = scope.get("route")
    template = getattr(route, "path", None) or UNMATCHED
    method = scope["method"] if scope["method"] in _METHODS else "OTHER"
    count, duration = _request_child(template, method, status)
    count.inc()
    duration.observe(seconds)
