"""Building a Faust app the same way for every projection.

Each projection is its own Faust app, so its own consumer group (the app id) and its own offsets:
one projection can be rebuilt (offsets reset, target swapped) without touching the others.
"""

import sys

import faust

from config import Settings
from streams.consumer_lag import ConsumerLag
from streams.metrics import serve


def create_app(app_id: str, settings: Settings) -> faust.App:
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.streams_store,
        # At-least-once: Faust's exactly-once mode has open bugs; our sinks are idempotent instead.
        processing_guarantee="at_least_once",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.streams_session_timeout_seconds,
        broker_heartbeat_interval=settings.streams_session_timeout_seconds / 5,
        # Topics come from the catalogue (ops/topics.py); only Faust's own changelogs may be declared.
        topic_disable_leader=True,
        topic_partitions=6,
        # Each worker process would otherwise bind the same web port.
        web_enabled=False,
        autodiscover=False,
    )
    _export_metrics(app, settings)
    return app


def _export_metrics(app: faust.App, settings: Settings) -> None:
    """Serve the worker's metrics on `settings.metrics_port` (none when 0) and sample its group's lag."""
    if not settings.metrics_port:
        return

    def groups() -> dict[str, set[str]]:
        # The app id is the consumer group; its topics are those its agents subscribed to.
        return {app.conf.id: {name for channel in app.topics for name in getattr(channel, "topics", ())}}

    async def export_metrics() -> None:
        if serve(settings.metrics_host, settings.metrics_port):
            await ConsumerLag(settings.kafka_bootstrap, groups).run(settings.metrics_interval_seconds)

    app.task(export_metrics)


def run_worker(app: faust.App, argv: list[str] | None = None) -> None:
    """`app.main()`, without Faust's web server: the `worker` command's `--with-web` default overrides
    `web_enabled=False`, and every worker process would bind port 6066, so the second one would die."""
    argv = list(sys.argv if argv is None else argv)
    if "worker" in argv and not any(a.startswith(("--with-web", "--without-web", "--web-")) for a in argv):
        argv.append("--without-web")
    sys.argv = argv
    app.main()
