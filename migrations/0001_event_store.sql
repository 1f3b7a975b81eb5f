-- The archive of every event of every event topic: the raw-events endpoint and audits read it.
-- Partitioned by month on the event's own time. Postgres needs the partition key inside every unique
-- constraint, so the key is (event_id, occurred_at); an event's time is part of the immutable event,
-- so a replayed or redelivered event hits the same key and is ignored.
CREATE TABLE event_store (
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    source          text        NOT NULL,
    subject         text        NOT NULL,
    user_id         text,
    session_id      text,
    correlation_id  text,
    causation_id    text,
    sequence        bigint,
    occurred_at     timestamptz NOT NULL,
    data            jsonb       NOT NULL,
    source_topic    text        NOT NULL,
    source_partition integer    NOT NULL,
    source_offset   bigint      NOT NULL,
    archived_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX event_store_subject_idx ON event_store (subject, occurred_at);
CREATE INDEX event_store_user_idx ON event_store (user_id, occurred_at DESC) WHERE user_id IS NOT NULL;
CREATE INDEX event_store_type_idx ON event_store (event_type, occurred_at);
CREATE INDEX event_store_time_idx ON event_store (occurred_at);
CREATE INDEX event_store_data_idx ON event_store USING gin (data jsonb_path_ops);

-- Creates the month's partition when missing. Called by the archive sink for each month it sees, so
-- an event from any time lands without an operator pre-creating partitions. The advisory lock makes
-- two workers racing on a new month take turns instead of failing.
CREATE FUNCTION ensure_event_store_month(at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    partition_name text := format('event_store_y%sm%s', to_char(month_start AT TIME ZONE 'UTC', 'YYYY'),
                                  to_char(month_start AT TIME ZONE 'UTC', 'MM'));
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('event_store_partitions'));
    IF to_regclass(partition_name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF event_store FOR VALUES FROM (%L) TO (%L)',
            partition_name, month_start, month_start + interval '1 month'
        );
    END IF;
    RETURN partition_name;
END;
$$;

-- Where each projection has got to in each source partition, written in the same transaction as the
-- rows it produced: the read-your-writes wait and replay progress read it.
CREATE TABLE projection_checkpoints (
    projection  text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);
