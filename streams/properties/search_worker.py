"""The property search projection worker: `python -m streams.properties.search_worker worker -l info`."""

from streams.app import run_worker
from streams.properties.search_app import app

run_worker(app)
