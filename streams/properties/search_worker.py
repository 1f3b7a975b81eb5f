"""The property search projection worker: `python -m streams.properties.search_worker worker -l info`."""

from streams.host import run_worker

run_worker("property-search-projection")
