# One image for the stream workers, the six services and the local mailbox and SMS sink
# (docker-compose.yml picks the command).
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
# Nothing runs as root: a system user owns only the state directory (keys, blobs, mailbox), which a new
# named volume mounted there inherits.
RUN useradd --system --uid 10001 --no-create-home --home-dir /var/lib/hyderabad hyderabad \
    && mkdir -p /var/lib/hyderabad \
    && chown hyderabad:hyderabad /var/lib/hyderabad
ENV HI_STATE_DIR=/var/lib/hyderabad
USER 10001:10001
