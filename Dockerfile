# One image for the stream workers and the six services (docker-compose.yml picks the command).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml ./
COPY schemas schemas
COPY api api
COPY streams streams
COPY config config
COPY storage storage
COPY ops ops
COPY migrations migrations
RUN pip install --no-cache-dir .
ENV HI_STATE_DIR=/var/lib/hyderabad
