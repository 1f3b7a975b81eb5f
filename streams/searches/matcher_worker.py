"""The saved-search matcher worker: `python -m streams.searches.matcher_worker worker -l info`."""

from streams.host import run_worker

run_worker("saved-search-matcher")
