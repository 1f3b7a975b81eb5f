"""The property read-model projection worker: `python -m streams.properties.projection_worker worker -l info`."""

from streams.app import run_worker
from streams.properties.projection_app import app

run_worker(app)
