"""The notification read-model projection: `python -m streams.notifications.projection_worker worker -l info`."""

from streams.app import run_worker
from streams.notifications.projection_app import app

run_worker(app)
