"""The saved-search matcher worker: `python -m streams.searches.matcher_worker worker -l info`."""

from streams.app import run_worker
from streams.searches.matcher_app import app

run_worker(app)
