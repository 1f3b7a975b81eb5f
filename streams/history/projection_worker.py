"""The live user-history projection worker: `python -m streams.history.projection_worker worker -l info`."""

from streams.host import run_worker

run_worker("user-history")
