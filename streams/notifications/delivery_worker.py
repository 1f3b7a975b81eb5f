"""The notification delivery reactor: `python -m streams.notifications.delivery_worker worker -l info`."""

from streams.app import run_worker
from streams.notifications.delivery_app import app

run_worker(app)
