"""The event archive: every event of every event topic, kept in Postgres `event_store`."""

from streams.app import run_worker
from streams.archive.app import app

run_worker(app)
