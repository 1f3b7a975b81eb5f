"""The property read-model projection worker: `python -m streams.properties.projection_worker worker -l info`."""

from streams.properties.projection_app import app

app.main()
