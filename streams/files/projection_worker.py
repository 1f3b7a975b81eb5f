"""The file read-model projection worker: `python -m streams.files.projection_worker worker -l info`."""

from streams.app import run_worker
from streams.files.projection_app import app

run_worker(app)
