"""The users read-model projection worker: `python -m streams.users.projection_worker worker -l info`."""

from streams.host import run_worker

run_worker("user-projection")
