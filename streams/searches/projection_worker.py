"""The search projection worker: `python -m streams.searches.projection_worker worker -l info`."""

from streams.app import run_worker
from streams.searches.projection_app import app

run_worker(app)
