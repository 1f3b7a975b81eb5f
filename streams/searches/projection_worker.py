"""The search projection worker: `python -m streams.searches.projection_worker worker -l info`."""

from streams.host import run_worker

run_worker("search-projection")
