"""The event archive: every event of every event topic, kept in Postgres `event_store`."""

from streams.archive.projection import ARCHIVE_CONSUMER
from streams.host import run_worker

run_worker(ARCHIVE_CONSUMER)
