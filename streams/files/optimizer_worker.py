"""The image optimiser worker: `python -m streams.files.optimizer_worker worker -l info`."""

from streams.app import run_worker
from streams.files.optimizer_app import app

run_worker(app)
