"""The file read-model projection worker: `python -m streams.files.projection_worker worker -l info`."""

from streams.host import run_worker

run_worker("file-projection")
