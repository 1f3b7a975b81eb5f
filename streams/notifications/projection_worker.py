"""The notification read-model projection: `python -m streams.notifications.projection_worker worker -l info`."""

from streams.host import run_worker

run_worker("notification-projection")
