"""The property read-model projection worker: `python -m streams.properties.projection_worker worker -l info`."""

from streams.host import run_worker

run_worker("property-projection")
