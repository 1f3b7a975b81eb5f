"""The users read-model projection worker: `python -m streams.users.projection_worker worker -l info`."""

from streams.app import run_worker
from streams.users.projection_app import app

run_worker(app)
