"""One process hosting several lean-runner projections: `python -m streams.host <name> [<name> ...]`.

Each hosted projection is its own consumer group with its own consumer and offsets (`GroupRunner`), so
it is still replayed, reset, probed and scaled alone; they share the process, its event loop, one
dead-letter producer and one metrics port (lag sampled for every hosted group). `make run` starts one
host for every lean projection (`ops/run.py`); a projection's own worker module
(`python -m streams.files.projection_worker worker -l info`) is a host of that one group.

If one group stops on a bug, the host stops (exit 1), so `make run` notices rather than leaving the
others running without it. SIGTERM and SIGINT finish and commit each group's batch in flight first.
"""

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Iterable, Sequence

from config import Settings, get_settings
from streams.archive.projection import ARCHIVE_CONSUMER
from streams.consumer_lag import ConsumerLag
from streams.metrics import serve
from streams.runner import GroupRunner, Projection, dead_letter_producer, start_producer

log = logging.getLogger("streams.host")

# Every projection the lean runner hosts: its name -> the module whose `projection(settings)` describes it.
HOSTED: dict[str, str] = {
    "file-projection": "streams.files.projection_app",
    "search-projection": "streams.searches.projection_app",
    "notification-projection": "streams.notifications.projection_app",
    "user-projection": "streams.users.projection_app",
    "property-projection": "streams.properties.projection_app",
    "property-search-projection": "streams.properties.search_app",
    ARCHIVE_CONSUMER: "streams.archive.app",
    "user-history": "streams.history.projection_app",
    "saved-search-matcher": "streams.searches.matcher_app",
}


def projection_named(name: str, settings: Settings) -> Projection:
    build: Callable[[Settings], Projection] = importlib.import_module(HOSTED[name]).projection
    return build(settings)


async def host(projections: Sequence[Projection], settings: Settings) -> None:
    producer = dead_letter_producer(settings)
    publish = await start_producer(producer)
    runners = [GroupRunner(projection, settings, publish, producer) for projection in projections]
    tasks = [asyncio.create_task(runner.run(), name=runner.projection.group) for runner in runners]
    if settings.metrics_port and serve(settings.metrics_host, settings.metrics_port):
        groups: dict[str, Iterable[str]] = {p.group: p.topics for p in projections}
        lag = ConsumerLag(settings.kafka_bootstrap, lambda: groups)
        tasks.append(asyncio.create_task(lag.run(settings.metrics_interval_seconds), name="consumer lag"))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a group that stopped on its own stops the host, with its error
        raise RuntimeError(f"{[t.get_name() for t in done]} stopped on their own")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()


def run(names: Sequence[str], loglevel: str = "info") -> int:
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s] [%(process)d] %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    projections = [projection_named(name, settings) for name in names]

    async def main() -> None:
        task = asyncio.create_task(host(projections, settings))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        log.info("hosting %s", ", ".join(f"{p.name} (group {p.group})" for p in projections))
        try:
            await task
        except asyncio.CancelledError:
            log.info("stopped")

    try:
        asyncio.run(main())
    except Exception:
        log.exception("host stopped")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.host", description=__doc__)
    parser.add_argument("names", nargs="+", choices=sorted(HOSTED), metavar="name", help=", ".join(sorted(HOSTED)))
    parser.add_argument("-l", "--loglevel", default="info")
    args = parser.parse_args(argv)
    return run(args.names, args.loglevel)


def run_worker(name: str, argv: Sequence[str] | None = None) -> None:
    """A projection's own worker module: `python -m <module> worker -l info` hosts that one group, the
    command line its Faust worker had (`ops.run` used to, the chaos tests still do)."""
    parser = argparse.ArgumentParser(prog=f"{name} worker")
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("-l", "--loglevel", default="info")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    sys.exit(run([name], args.loglevel))


if __name__ == "__main__":
    sys.exit(main())
