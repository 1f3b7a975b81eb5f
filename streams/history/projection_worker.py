"""The live user-history projection worker: `python -m streams.history.projection_worker worker -l info`."""

from streams.app import run_worker
from streams.history.projection_app import app

run_worker(app)
